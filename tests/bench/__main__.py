"""``python -m tests.bench [BENCHMARK ...] [--quick] [--rows ...]``, BENCHMARK among ``report.ORDER``.

Threads are pinned before anything numeric is imported, here and in every process started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from tests.bench.report import ORDER as BENCHMARKS  # plain Python: nothing numeric is imported yet


def main() -> int:
    """Parse the command line and run the benchmarks asked for (all by default)."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("benchmarks", nargs="*", metavar="BENCHMARK", help=f"any of {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer requests, rows and rounds")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, profiles)")
    parser.add_argument(
        "--report",
        action="store_true",
        help="only write BENCHMARKS.md again from the figures kept by earlier runs",
    )
    parser.add_argument(
        "--rows",
        help="sizes for the scale benchmark, e.g. 100k,500k,2m,5m (default 100k,500k,2m; --quick: 100k)",
    )
    args = parser.parse_args()
    if args.rows:
        os.environ["CONVEYOR_BENCH_SCALE_ROWS"] = args.rows
    unknown = sorted(set(args.benchmarks) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    from tests.bench.runner import report_only, run_all

    if args.report:
        return report_only(quick=args.quick)

    chosen = [name for name in BENCHMARKS if name in args.benchmarks] or list(BENCHMARKS)
    return asyncio.run(run_all(chosen, quick=args.quick, keep=args.keep))


if __name__ == "__main__":
    sys.exit(main())
