"""A serving worker started ahead of need: its imports done, it waits to be handed an endpoint.

Most of a new worker's start is importing (BentoML's server stack, scikit-learn with SciPy, skops,
pandas): seconds, against milliseconds to load and warm a model. The deploy service keeps a spare
process that has done those imports and waits on a Unix socket. Handed an endpoint's listening
socket (passed as a file descriptor, SCM_RIGHTS), the worker's arguments and its environment, it
becomes that endpoint's worker: BentoML's worker entry point runs in it as it would in a fresh
process. Nothing that reads the endpoint's environment at import (the metrics directory, the
service module and its arguments) is imported before the hand-over.

Run as ``python -m services.deploy.serving.spare SOCKET``.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from services.deploy.workers import BENTOML_WORKER

_MESSAGE_BYTES = 1 << 20


# Everything a worker imports that reads nothing of the endpoint's environment at import: not
# prometheus_client (it fixes its multiprocess directory when imported), so none of our modules
# that register metrics, and not the service module (it reads the worker's arguments).
PRELOADED = (
    "bentoml",
    BENTOML_WORKER,
    "_bentoml_impl.server.app",
    "_bentoml_impl.loader",
    "uvicorn",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "shared.messaging",
    "shared.model_format",
    "services.train.fitting",
    "services.deploy.serving.io",
    "services.deploy.serving.guard",
    "services.deploy.serving.batching",
    "services.deploy.serving.capture",
    "services.deploy.serving.control",
    "services.deploy.serving.feedback",
    "services.deploy.serving.predict",
    "services.deploy.serving.tracing",
    "services.deploy.serving.warmup",
)


def preload() -> None:
    """Import what every worker imports and no endpoint's settings change."""
    for module in PRELOADED:
        importlib.import_module(module)


def wait_for_work(path: Path) -> tuple[dict[str, Any], int]:
    """Listen on ``path`` until the deploy service hands over one endpoint; its order and socket fd."""
    path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        while True:
            connection, _ = listener.accept()
            with connection:
                message, fds, _, _ = socket.recv_fds(connection, _MESSAGE_BYTES, 1)
                if fds and message:
                    connection.sendall(b"ok")
                    path.unlink()
                    return json.loads(message), fds[0]
                for fd in fds:
                    os.close(fd)


def main() -> None:
    """Preload, wait for an endpoint, then run as its BentoML worker."""
    path = Path(sys.argv[1])
    preload()
    order, fd = wait_for_work(path)
    os.environ.update(order["env"])
    worker = importlib.import_module(BENTOML_WORKER).main  # the one private entry point (see workers)
    worker.main(args=[*order["argv"], "--fd", str(fd)], prog_name=BENTOML_WORKER)


if __name__ == "__main__":
    main()
