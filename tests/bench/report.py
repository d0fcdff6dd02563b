"""Results: one section per benchmark, printed as it finishes and gathered into BENCHMARKS.md."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ORDER = (
    "serving",
    "throughput",
    "bus",
    "production",
    "batch",
    "spark",
    "registry",
    "scale",
    "console",
    "onnx",
    "scaling",
    "shadow",
    "pool",
)
HEADERS = ["measure", "Conveyor", "baseline", "ratio", "target", "met"]


@dataclass
class Section:
    """One benchmark's outcome: a table of Conveyor against its baseline, and what limits it."""

    key: str
    title: str
    method: str
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    analysis: str = ""
    quick: bool = False
    seconds: float = 0.0
    finished_at: str = ""
    commit: str = ""

    def add(
        self,
        measure: str,
        conveyor: float,
        baseline: float | None,
        *,
        unit: str,
        target: str = "",
        met: bool | None = None,
        digits: int = 2,
        ratio: float | None = None,
    ) -> None:
        """A row: the two figures, their ratio (Conveyor / baseline unless given) and the verdict."""
        if ratio is None and baseline:
            ratio = conveyor / baseline
        self.rows.append(
            [
                measure,
                f"{number(conveyor, digits)} {unit}",
                f"{number(baseline, digits)} {unit}" if baseline is not None else "—",
                f"{number(ratio, 2)}x" if ratio is not None else "—",
                target or "—",
                "—" if met is None else ("yes" if met else "**no**"),
            ]
        )

    def markdown(self) -> str:
        """The section as Markdown."""
        lines = [f"## {self.title}", "", self.method, ""]
        lines += [_row(HEADERS), _row(["---"] * len(HEADERS)), *(_row(r) for r in self.rows), ""]
        if self.notes:
            lines += [*(f"- {note}" for note in self.notes), ""]
        if self.analysis:
            lines += [f"**What limits it.** {self.analysis.strip()}", ""]
        mode = "quick (smoke) run" if self.quick else "full run"
        lines += [f"*{mode}, {self.seconds:.0f} s, {self.finished_at}, commit {self.commit}*", ""]
        return "\n".join(lines)


def number(value: float | None, digits: int = 2) -> str:
    """A figure for a table (NaN and None as a dash)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def commit() -> str:
    """The checked-out commit (with ``+dirty`` when the tree has changes)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
        return head + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> list[str]:
    """What the figures were measured on."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal"):
                memory_kib = int(line.split()[1])
    libraries = ", ".join(
        f"{name} {_version(name)}"
        for name in ("bentoml", "scikit-learn", "numpy", "pandas", "pydantic", "aiokafka", "faststream",
                     "uvicorn", "starlette", "aiohttp", "minio")
    )  # fmt: skip
    blas = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_CORE") or k == "OPENBLAS_L2_SIZE"}
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores; memory {memory_kib / 1024 / 1024:.0f} GiB; "
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}; {libraries}",
        "Kafka (KRaft, one broker) and MinIO as local processes on the same machine; every server, "
        "baseline and load generator shares the 2 cores; OMP/OpenBLAS/MKL threads pinned to 1, "
        f"n_jobs=1{'; ' + ', '.join(f'{k}={v}' for k, v in blas.items()) if blas else ''}",
    ]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def save(section: Section, results_dir: Path) -> None:
    """Keep a section's figures so that a run of some benchmarks leaves the others' in the report."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{section.key}.json").write_text(json.dumps(asdict(section), indent=2))


def load_all(results_dir: Path) -> list[Section]:
    """Every kept section, in benchmark order."""
    found = []
    for key in ORDER:
        path = results_dir / f"{key}.json"
        if path.exists():
            found.append(Section(**json.loads(path.read_text())))
    return found


def render(sections: list[Section], *, summary: str, preamble: str) -> str:
    """BENCHMARKS.md."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m tests.bench`); every figure is a median over repeated, "
        "alternated measurements of Conveyor and its baseline taken in the same run.",
        "",
        "## Machine",
        "",
        *(f"- {line}" for line in machine()),
        "",
        preamble.strip(),
        "",
        summary.strip(),
        "",
    ]
    for section in sections:
        lines.append(section.markdown())
    return "\n".join(lines).rstrip() + "\n"


def now() -> str:
    """The time, for a section's footer."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
