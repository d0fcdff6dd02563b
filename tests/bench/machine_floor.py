"""What this machine charges for bytes, measured in the same run as the figures they bound.

Two costs decide how far a data-heavy stage can come down here, whatever the code does:

- MinIO's CPU per byte written. Ingest stores the raw file (a server-side copy) and the two
  splits; each written byte costs MinIO hashing and copying on the same cores as the service.
- Touching memory for the first time. On a virtual machine whose host backs guest memory lazily
  and takes freed pages back (virtio-balloon free page reporting), memory that was not used in
  the last seconds costs far more to touch than memory just freed. A stage is charged for the new
  memory it needs, so one that needs three times the frame pays three times for it.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid

from minio import Minio

from infra import stack as infra_stack
from shared.settings import Settings
from tests.bench.profile import cpu_seconds

WRITE_MB = 100
TOUCH_MB = 200
# Longer than free page reporting's delay (2 s in Linux), so that freed pages have been handed back.
IDLE_S = 4.0
_TOUCH = """
import time, numpy as np
began = time.perf_counter(); block = np.ones({mb} * 1024 * 1024 // 8); first = time.perf_counter() - began
del block
began = time.perf_counter(); block = np.ones({mb} * 1024 * 1024 // 8); again = time.perf_counter() - began
print(first, again)
"""


def minio_write_cost(client: Minio, bucket: str, *, minio_pid: int | None) -> dict[str, float]:
    """Seconds to PUT ``WRITE_MB`` MiB of random bytes, and MinIO's CPU seconds for it (pid known)."""
    data = os.urandom(WRITE_MB * 1024 * 1024)
    key = f"machine-floor/{uuid.uuid4().hex}"
    cpu_before = cpu_seconds([minio_pid]) if minio_pid else 0.0
    began = time.perf_counter()
    client.put_object(bucket, key, io.BytesIO(data), len(data), part_size=16 * 1024 * 1024)
    figures = {"minio put s": time.perf_counter() - began}
    if minio_pid:
        figures["minio cpu s"] = cpu_seconds([minio_pid]) - cpu_before
    client.remove_object(bucket, key)
    return figures


def memory_touch_cost() -> dict[str, float]:
    """Seconds to touch ``TOUCH_MB`` MiB in a new process after ``IDLE_S`` idle, then the same again."""
    time.sleep(IDLE_S)
    done = subprocess.run(
        [sys.executable, "-c", _TOUCH.format(mb=TOUCH_MB)], capture_output=True, text=True, check=True
    )
    first, again = (float(value) for value in done.stdout.split())
    return {"touch first s": first, "touch again s": again}


def minio_pid(settings: Settings) -> int | None:
    """The pid of the MinIO server that the infra of ``settings`` runs, if it is running."""
    return next((server.pid for server in infra_stack.status(settings) if server.name == "minio"), None)


def describe(figures: dict[str, float]) -> str:
    """One line for the section's notes."""
    put = figures["minio put s"]
    line = f"this machine in this run: MinIO stored {WRITE_MB} MiB in {put:.2f} s ({WRITE_MB / put:.0f} MiB/s"
    if "minio cpu s" in figures:
        line += f", {figures['minio cpu s'] * 1000 / WRITE_MB:.1f} ms of MinIO CPU per MiB"
    return line + (
        f"); touching {TOUCH_MB} MiB of memory took {figures['touch first s']:.2f} s after {IDLE_S:.0f} s "
        f"idle and {figures['touch again s']:.2f} s right after it was freed "
        f"({figures['touch first s'] * 1000 / TOUCH_MB:.1f} against "
        f"{figures['touch again s'] * 1000 / TOUCH_MB:.2f} ms per MiB)"
    )
