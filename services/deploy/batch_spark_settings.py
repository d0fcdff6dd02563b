"""``CONVEYOR_SPARK_*`` settings: which Spark master batch jobs run on, and how the local cluster listens.

Kept apart from the shared settings because only the deploy service's Spark engine and the opt-in
local cluster (``infra.spark``) read them. The default ports (7177-7184) sit clear of Conveyor's own
(Kafka 9092+, MinIO 9000, registry 8000, deploy 8100, endpoints 8200+, console 8300).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SparkSettings(BaseSettings):
    """Where the Spark master is, how the local standalone cluster listens, and the jobs' memory."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_SPARK_", extra="ignore")

    master_url: str | None = Field(default=None, description="spark://host:port; defaults to the local one")
    host: str = "127.0.0.1"
    master_port: int = Field(default=7177, ge=1024, le=65535)
    master_ui_port: int = Field(default=7178, ge=1024, le=65535)
    # Worker n (from 1) listens on worker_port_base + 2(n-1), its web UI one port above.
    worker_port_base: int = Field(default=7179, ge=1024, le=65000)
    workers: int = Field(default=2, ge=1, le=16)
    worker_cores: int = Field(default=1, ge=1, le=64)
    worker_memory: str = "1g"
    # Small on purpose: the driver only plans parts and gathers their row counts, never the rows.
    driver_memory: str = "512m"
    executor_memory: str = "512m"
    # Rows scored per task at most (whole Parquet row groups are kept together): small enough that a
    # million-row file spreads over the workers, large enough that a task's start-up is amortised.
    part_rows: int = Field(default=250_000, ge=1)
    # How long a job waits with no executor (no live worker, or none with a free core and the
    # executor's memory) before it fails: a standalone master otherwise keeps it waiting for ever.
    # Long enough for a worker to start an executor's JVM on a busy machine.
    executor_wait_s: float = Field(default=60.0, gt=0)

    @property
    def master(self) -> str:
        """The master batch jobs are submitted to."""
        return self.master_url or f"spark://{self.host}:{self.master_port}"

    def worker_ports(self, number: int) -> tuple[int, int]:
        """Worker ``number``'s (port, web UI port)."""
        port = self.worker_port_base + 2 * (number - 1)
        return port, port + 1
