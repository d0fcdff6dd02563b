"""The search's worker processes: warmed once and reused by searches, gone with the service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from joblib import Parallel, delayed

from services.train.workers import search_workers, warm

ROOT = Path(__file__).resolve().parents[3]


def test_searches_run_on_the_workers_warmed_at_start() -> None:
    warmed = warm(2)
    assert len(warmed) == 2 and os.getpid() not in warmed
    # Searches run under the same settings, so joblib hands them these workers, not new ones.
    with search_workers():
        used = set(Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(20)))
    assert used and used <= warmed


def test_one_job_starts_no_worker() -> None:
    assert warm(1) == set()


def test_workers_exit_when_the_service_is_killed() -> None:
    service = subprocess.Popen(
        [sys.executable, "-c", "import time; from services.train.workers import warm; "
         "print(*warm(2), flush=True); time.sleep(300)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert service.stdout is not None
        workers = {int(pid) for pid in service.stdout.readline().split()}
        assert len(workers) == 2 and all(_running(pid) for pid in workers)
    finally:
        service.send_signal(signal.SIGKILL)
        service.wait()
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(pid) for pid in workers), "a worker outlived the killed service"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing
