"""An opt-in Spark standalone cluster on this machine: a master and workers from the pyspark wheel.

pyspark's wheel carries Spark's jars and ``bin/spark-class``, so no other download is needed; Java 17
runs it. Each process is a ``process.Server`` like Kafka's and MinIO's: logs under
``<state>/spark/``, a pidfile, stopped by process id. Started by ``CONVEYOR_SPARK=1 make up`` or by
the Spark tests; ports from ``CONVEYOR_SPARK_*`` (``services.deploy.batch_spark_settings``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from infra import process
from services.deploy.batch_spark_settings import SparkSettings
from shared.settings import Settings

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def requested() -> bool:
    """Whether ``make up`` should start the cluster too (``CONVEYOR_SPARK=1``)."""
    return os.environ.get("CONVEYOR_SPARK", "").lower() in ("1", "true", "yes")


def installed() -> bool:
    """Whether pyspark (and so Spark's distribution) is installed: ``pip install -e '.[spark]'``."""
    return importlib.util.find_spec("pyspark") is not None


def spark_home() -> Path:
    """The Spark distribution inside the installed pyspark wheel."""
    try:
        import pyspark
    except ImportError:
        raise process.InfraError(
            "pyspark is not installed: pip install -e '.[spark]' (make test-cluster does)"
        ) from None
    return Path(pyspark.__file__).parent


def master_state(settings: Settings, spark: SparkSettings) -> dict[str, Any] | None:
    """The master's own report (its web UI's JSON), or None while it does not answer."""
    try:
        answer = httpx.get(f"http://{spark.host}:{spark.master_ui_port}/json/", timeout=2.0)
        return dict(answer.json()) if answer.is_success else None
    except (httpx.HTTPError, ValueError):
        return None


def alive_workers(settings: Settings, spark: SparkSettings) -> int:
    """How many workers the master counts as alive."""
    state = master_state(settings, spark) or {}
    return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")


def master_server(settings: Settings, spark: SparkSettings) -> process.Server:
    """The standalone master."""
    argv = ["--host", spark.host, "--port", str(spark.master_port), "--webui-port", str(spark.master_ui_port)]
    return _server(
        settings,
        spark,
        name="spark-master",
        argv=[MASTER_CLASS, *argv],
        ports=[spark.master_port, spark.master_ui_port],
        ready=lambda: (master_state(settings, spark) or {}).get("status") == "ALIVE",
    )


def worker_server(settings: Settings, spark: SparkSettings, number: int) -> process.Server:
    """Worker ``number`` (from 1), registered with the master."""
    port, ui_port = spark.worker_ports(number)
    work = _spark_dir(settings) / f"worker-{number}"
    argv = [
        *("--host", spark.host, "--port", str(port), "--webui-port", str(ui_port)),
        *("--cores", str(spark.worker_cores), "--memory", spark.worker_memory),
        *("--work-dir", str(work)),
    ]

    def ready() -> bool:
        state = master_state(settings, spark) or {}
        return any(w.get("port") == port and w.get("state") == "ALIVE" for w in state.get("workers", []))

    return _server(
        settings,
        spark,
        name=f"spark-worker-{number}",
        argv=[WORKER_CLASS, *argv, f"spark://{spark.host}:{spark.master_port}"],
        ports=[port, ui_port],
        ready=ready,
    )


def start_spark(
    settings: Settings,
    spark: SparkSettings | None = None,
    *,
    workers: int | None = None,
    timeout: float = 120.0,
) -> SparkSettings:
    """Start the master and ``workers`` workers (default ``CONVEYOR_SPARK_WORKERS``) unless they run."""
    spark = spark or SparkSettings()
    process.start(master_server(settings, spark), timeout=timeout)
    for number in range(1, (workers or spark.workers) + 1):
        process.start(worker_server(settings, spark, number), timeout=timeout)
    return spark


def stop_spark(settings: Settings, spark: SparkSettings | None = None) -> None:
    """Stop every worker this state directory records, then the master, by process id."""
    spark = spark or SparkSettings()
    for number in range(16, 0, -1):  # whatever count they were started with
        server = worker_server(settings, spark, number)
        if process.running_pid(server) is not None:
            process.stop(server)
    if process.running_pid(master_server(settings, spark)) is not None:
        process.stop(master_server(settings, spark))


def stop_worker(settings: Settings, spark: SparkSettings, number: int) -> bool:
    """Stop one worker by its pid; return whether it was running."""
    return process.stop(worker_server(settings, spark, number))


def _spark_dir(settings: Settings) -> Path:
    return settings.state_dir / "spark"


def _server(
    settings: Settings,
    spark: SparkSettings,
    *,
    name: str,
    argv: list[str],
    ports: list[int],
    ready: Any,
) -> process.Server:
    home = spark_home()
    logs = _spark_dir(settings) / "logs"
    marker = f"-Dconveyor.spark.dir={_spark_dir(settings)}"  # on the java command line: whose pid it is
    return process.Server(
        name=name,
        argv=[str(home / "bin" / "spark-class"), *argv],
        address=f"{spark.host}:{ports[0]}",
        ports=[(spark.host, port) for port in ports],
        run_dir=settings.state_dir / "run",
        output=logs / f"{name}.log",
        ready=ready,
        marker=marker,
        env={
            "SPARK_HOME": str(home),
            "SPARK_LOG_DIR": str(logs),
            "SPARK_LOCAL_IP": spark.host,
            "SPARK_DAEMON_JAVA_OPTS": marker,
            "SPARK_DAEMON_MEMORY": "256m",
            # Executors start Python workers with this interpreter: the venv that has Conveyor.
            "PYSPARK_PYTHON": sys.executable,
        },
    )
