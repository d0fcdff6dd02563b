"""Compiled inference: one row scored in-process through ONNX Runtime against scikit-learn.

Both runtimes take the same JSON row through their own input path (ONNX Runtime: arrays built
straight from the row; scikit-learn: the feature frame) and the same model, as the deploy service
proves and the endpoint serves it. Alternated, medians; one thread (``make bench`` limits BLAS and
ONNX Runtime to one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from services.deploy.compile import choose_runtime
from services.deploy.serving.runtime import OnnxRuntime, Runtime, SklearnRuntime
from tests.bench.breakdown import card_of
from tests.bench.harness import BenchContext
from tests.bench.models import KINDS, LABELS, fitted, rows
from tests.bench.profile import time_call
from tests.bench.report import Section, now

TARGET = 0.5  # ONNX Runtime at most half scikit-learn's time for a row


async def run(context: BenchContext) -> Section:
    """One-row in-process scoring, ONNX Runtime over scikit-learn, for each benchmarked model."""
    started = time.perf_counter()
    repeat = 100 if context.quick else 1000
    section = Section(
        key="onnx",
        title="Compiled inference: one row in-process, ONNX Runtime vs scikit-learn",
        method=(
            "The same fitted pipeline (the platform's preprocessing + estimator) and JSON row; each "
            "runtime builds its inputs from the row and predicts (labels and probabilities), "
            f"median of {repeat} calls, the two alternated over 3 rounds, one intra-op thread."
        ),
        quick=context.quick,
    )
    for kind in KINDS:
        one = fitted(kind, f"onnx-bench-{kind}")
        card = card_of(one)
        choice = await asyncio.to_thread(choose_runtime, one.model, card, one.data.test)
        if choice.onnx is None:
            section.notes.append(f"{LABELS[kind]}: serves with scikit-learn: {choice.runtime.reason}")
            continue
        runtimes: dict[str, Runtime] = {
            "onnx": OnnxRuntime(choice.onnx, card),
            "sklearn": SklearnRuntime(one.model, card),
        }
        row = rows(one.data)[0]
        medians: dict[str, list[float]] = {"onnx": [], "sklearn": []}
        for _ in range(3):
            for name, runtime in runtimes.items():
                medians[name].append(await asyncio.to_thread(time_call, _scorer(runtime, row), repeat=repeat))
        onnx_us, sklearn_us = (sorted(medians[n])[1] for n in ("onnx", "sklearn"))
        section.add(
            f"{LABELS[kind]}: one row, ONNX Runtime vs scikit-learn",
            onnx_us,
            sklearn_us,
            unit="µs",
            target=f"≤ {TARGET}x",
            met=onnx_us <= TARGET * sklearn_us,
            digits=1,
        )
        section.notes.append(f"{LABELS[kind]}: {choice.runtime.reason}")
    section.seconds = time.perf_counter() - started
    section.finished_at = now()
    return section


def _scorer(runtime: Runtime, row: dict[str, float]) -> Callable[[], object]:
    return lambda: runtime.predict(runtime.inputs_of_rows([row]))
