"""Run the chosen benchmarks against the real Kafka and MinIO, then write BENCHMARKS.md."""

from __future__ import annotations

import shutil
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from threadpoolctl import threadpool_limits

from infra import stack as infra_stack
from tests.bench import (
    bench_batch,
    bench_bus,
    bench_console,
    bench_onnx,
    bench_pool,
    bench_production,
    bench_registry,
    bench_scale,
    bench_scaling,
    bench_serving,
    bench_shadow,
    bench_spark,
)
from tests.bench.harness import BenchContext, bench_settings
from tests.bench.report import ROOT, Section, commit, load_all, render, save

PREAMBLE = """
How to read the tables: *ratio* is Conveyor's figure over the baseline's (for a target on
Conveyor's own figures, the reference is named in the row). *met* compares with the target of the
task. Figures from a shared two-core machine move by 10-30 % between runs; the ratios, measured
in alternation within one run, move less.
"""


def _runners(
    context: BenchContext, chosen: list[str]
) -> list[tuple[str, Callable[[], Awaitable[list[Section]]]]]:
    steps: list[tuple[str, Callable[[], Awaitable[list[Section]]]]] = []
    if "serving" in chosen or "throughput" in chosen:
        latency, throughput = "serving" in chosen, "throughput" in chosen
        steps.append(("serving", lambda: bench_serving.run(context, latency=latency, throughput=throughput)))
    singles = {
        "bus": bench_bus.run,
        "production": bench_production.run,
        "batch": bench_batch.run,
        "spark": bench_spark.run,
        "registry": bench_registry.run,
        "scale": bench_scale.run,
        "console": bench_console.run,
        "onnx": bench_onnx.run,
        "scaling": bench_scaling.run,
        "shadow": bench_shadow.run,
        "pool": bench_pool.run,
    }
    for name, run in singles.items():
        if name in chosen:
            steps.append((name, lambda run=run: _one(run(context))))  # type: ignore[misc]
    return steps


async def _one(section: Awaitable[Section]) -> list[Section]:
    return [await section]


async def run_all(chosen: list[str], *, quick: bool, keep: bool) -> int:
    """Run ``chosen``; returns the process exit code (1 when a benchmark could not run)."""
    settings = bench_settings()
    started_here = not all(entry.healthy for entry in infra_stack.status(settings))
    if started_here:
        settings = infra_stack.up(settings)
    context = BenchContext(settings=settings, work_dir=settings.state_dir / "bench", quick=quick)
    results_dir = results_path(settings.state_dir, quick=quick)
    began = time.perf_counter()
    failed: list[str] = []
    revision = commit()
    try:
        with threadpool_limits(limits=1):
            for name, run in _runners(context, chosen):
                print(f"\n=== {name} ===", flush=True)
                try:
                    sections = await run()
                except Exception:
                    failed.append(name)
                    traceback.print_exc()
                    continue
                for section in sections:
                    section.commit = revision
                    save(section, results_dir)
                    print(section.markdown(), flush=True)
    finally:
        if not keep:
            shutil.rmtree(context.work_dir / context.run_id, ignore_errors=True)
        if started_here:
            infra_stack.down(settings)
    total = time.perf_counter() - began
    output = ROOT / "BENCHMARKS.md" if not quick else results_dir / "BENCHMARKS.md"
    summary = _summary(chosen, total, failed, quick)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "summary.txt").write_text(summary)
    write_report(results_dir, output, summary=summary)
    print(f"\n{'quick run' if quick else 'run'} of {', '.join(chosen)}: {total:.0f} s; report in {output}")
    if failed:
        print(f"could not run: {', '.join(failed)}")
    return 1 if failed else 0


ANALYSES = {
    "serving": bench_serving.LATENCY_ANALYSIS,
    "throughput": bench_serving.THROUGHPUT_ANALYSIS,
    "bus": bench_bus.ANALYSIS,
    "production": bench_production.ANALYSIS,
    "batch": bench_batch.ANALYSIS,
    "spark": bench_spark.ANALYSIS,
    "registry": bench_registry.ANALYSIS,
    "scale": bench_scale.ANALYSIS,
    "console": bench_console.ANALYSIS,
    "scaling": bench_scaling.ANALYSIS,
}


def write_report(results_dir: Path, output: Path, *, summary: str) -> None:
    """BENCHMARKS.md from every kept section, with the analysis as the code now states it."""
    sections = load_all(results_dir)
    for section in sections:
        section.analysis = ANALYSES.get(section.key, section.analysis)
    output.write_text(render(sections, summary=summary, preamble=PREAMBLE))


def report_only(*, quick: bool) -> int:
    """Write BENCHMARKS.md again from the kept figures (nothing is measured)."""
    settings = bench_settings()
    results_dir = results_path(settings.state_dir, quick=quick)
    output = results_dir / "BENCHMARKS.md" if quick else ROOT / "BENCHMARKS.md"
    summary_file = results_dir / "summary.txt"
    summary = summary_file.read_text() if summary_file.exists() else ""
    write_report(results_dir, output, summary=summary)
    print(f"report in {output}")
    return 0


def _summary(chosen: list[str], total: float, failed: list[str], quick: bool) -> str:
    line = (
        f"The last run (`python -m tests.bench{' --quick' if quick else ''} {' '.join(chosen)}`) took "
        f"{total / 60:.1f} min"
    )
    if failed:
        line += f"; could not run: {', '.join(failed)}"
    return line + "."


def results_path(state_dir: Path, *, quick: bool) -> Path:
    """Where a run keeps its sections."""
    return state_dir / "bench" / ("results-quick" if quick else "results")
