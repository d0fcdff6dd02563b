"""Where ingest's memory comes from: one allocator for Arrow and numpy, given back when done.

Arrow's own allocator (mimalloc) keeps what Arrow frees for Arrow: the decoded file's buffers
could not serve numpy's checks or the splits that follow, so their peaks added up, and an idle
ingest process went on holding the memory of its largest arrival (850 MiB after a 2M-row file).
Through malloc, what decoding frees is reused by the rest of the arrival, and returned once
the arrival is done.

glibc's malloc gives each new thread an arena of its own, up to eight per core, and an arena
keeps what its threads freed. An arrival runs on a worker thread, beside Arrow's parsing and I/O
threads and the pool that stores the splits, so its memory was spread over a dozen arenas and
little of one arrival's freed memory served the next: with one arena per core, the scale bench's
100k-row arrival raised ingest's memory 47-57 MiB in four runs, against 68-71 MiB before.
Measured in BENCHMARKS.md §8.
"""

from __future__ import annotations

import ctypes
import os
import platform

# Arrow reads it when it first allocates; an operator's own choice is kept.
POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
# glibc reads it at the process's start; when an operator set it, it already applies.
ARENA_VARIABLE = "MALLOC_ARENA_MAX"
_M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def configure_memory() -> None:
    """Malloc for Arrow, with one arena per core; call it before anything allocates on threads."""
    os.environ.setdefault(POOL_VARIABLE, "system")
    if ARENA_VARIABLE not in os.environ and platform.libc_ver()[0] == "glibc":
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, len(os.sched_getaffinity(0)))
