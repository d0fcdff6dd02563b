"""The search's worker processes: started with the service, kept warm, gone with it.

On two cores or more a search fits its folds in joblib's loky worker processes. Started on
demand, they cost the first search after the service starts (or after they idled out) seconds
of imports: more than the whole search on 100k rows once they run. So train starts them when it
starts and keeps them through quiet hours, and each exits on its own when the service dies, even
by SIGKILL (an idle worker would otherwise wait out its time-out as an orphan).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from joblib import Parallel, delayed, parallel_config

# How long idle workers are kept: a quiet pipeline's time between two arrivals.
IDLE_S = 3600
# How often a worker checks that the service that started it is still there.
PARENT_CHECK_S = 1.0
# How long warming may take before train goes on with the workers that are up.
WARM_TIMEOUT_S = 60.0
_READY_HOLD_S = 0.05


@contextmanager
def search_workers() -> Iterator[None]:
    """joblib's settings for a search: the same in every thread, so that searches reuse warm workers."""
    with parallel_config(
        backend="loky",
        idle_worker_timeout=IDLE_S,
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    ):
        yield


def warm(n_jobs: int) -> set[int]:
    """Start ``n_jobs`` workers with the fitting code imported; their pids (none for one job)."""
    if n_jobs < 2:
        return set()
    ready: set[int] = set()
    deadline = time.monotonic() + WARM_TIMEOUT_S
    with search_workers():
        # A worker that is up first can take every task of a round while another still starts;
        # rounds go on until each worker has run one.
        while len(ready) < n_jobs and time.monotonic() < deadline:
            ready |= set(Parallel(n_jobs=n_jobs)(delayed(_ready)() for _ in range(n_jobs)))
    return ready


def _ready() -> int:
    # Runs in a worker: what every search unpickles there, imported once, now.
    import services.train.fitting  # noqa: F401

    time.sleep(_READY_HOLD_S)  # held a moment, so that an idle worker takes the next task
    return os.getpid()


def _exit_with_parent(parent: int) -> None:
    """In each worker as it starts: exit once the process that started it is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
