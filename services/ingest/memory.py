"""Where ingest's memory comes from: one allocator for Arrow and numpy, given back when done.

Arrow's own allocator (mimalloc) keeps what Arrow frees for Arrow: the decoded file's buffers
could not serve numpy's checks or the splits that follow, so their peaks added up, and an idle
ingest process went on holding the memory of its largest arrival (850 MiB after a 2M-row file).
Through malloc, what decoding frees is reused by the rest of the arrival, and returned once
the arrival is done. Measured in BENCHMARKS.md §8.
"""

from __future__ import annotations

import os

# Arrow reads it when it first allocates; an operator's own choice is kept.
POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def allocate_arrow_through_malloc() -> None:
    """Make malloc Arrow's default allocator in this process; call it before Arrow allocates."""
    os.environ.setdefault(POOL_VARIABLE, "system")
