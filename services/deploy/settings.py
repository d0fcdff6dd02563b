"""The deploy service's settings: the shared ones plus where endpoints listen and how serving behaves."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.events.envelope import EnvironmentName
from shared.settings import Settings


class DeploySettings(Settings):
    """``CONVEYOR_*`` settings of the deploy service and of the BentoML servers it starts."""

    # The deploy service's control API listens on deploy_host:deploy_port (shared settings, since
    # clients need them too); endpoints are reported as serving in this environment, and only
    # versions approved for it (the first of a spec's environments) or promoted to it are served.
    environment: EnvironmentName = "production"

    # Replicas of this environment's deploy service on this host (services.deploy.replicas).
    deploy_replicas: int = Field(default=1, ge=1, le=6)

    # Stable endpoints: one port per pipeline, taken from this range and kept across restarts.
    serving_host: str = "127.0.0.1"
    serving_advertised_host: str | None = Field(
        default=None, description="Host written into endpoint URLs; defaults to serving_host."
    )
    serving_port_base: int = Field(default=8200, ge=1024, le=65000)
    serving_port_count: int = Field(default=100, ge=1, le=1000)

    # The BentoML servers behind each endpoint.
    serving_workers: int = Field(default=1, ge=1, le=64)
    # Workers started ahead of need (imports done) that a new endpoint or a lost worker takes over:
    # a first version then answers in well under a second instead of after a new process's imports.
    serving_spare_workers: int = Field(default=1, ge=0, le=16)
    serving_ready_timeout_s: float = Field(default=120.0, gt=0)
    serving_drain_timeout_s: float = Field(default=30.0, gt=0)
    serving_stop_timeout_s: float = Field(default=20.0, gt=0)
    # How often the deploy service checks that every active version still serves (restarting it if not).
    serving_watch_interval_s: float = Field(default=5.0, gt=0)
    # Adaptive batching in each worker: requests waiting together share one model call (at most
    # this many rows), with no latency budget and no shedding; 1 turns it off.
    serving_batch_max_rows: int = Field(default=256, ge=1, le=10_000)
    # Compiled inference: a new version serves through ONNX Runtime where it is proven equal to
    # scikit-learn on its whole test split (false: every new version serves with scikit-learn),
    # with this many intra-op threads per worker (the workers are the endpoint's parallelism).
    serving_onnx: bool = True
    serving_onnx_threads: int = Field(default=1, ge=1, le=64)
    # A batch job is one caller with a large input, so its compiled model runs with this many
    # intra-op threads (0: one per core), unlike a worker among workers; lower it where busy
    # endpoints share the machine.
    batch_threads: int = Field(default=0, ge=0, le=256)

    # Shared workers (opt-in): pipelines served from the same warm workers on one port, each at
    # /pipelines/<name>, models loaded on first use and the least recently used unloaded past the
    # budget. A spec's deployment.workers chooses per pipeline ("default" follows serving_pool).
    serving_pool: bool = False
    serving_pool_port: int | None = Field(
        default=None, ge=1024, le=65535, description="Defaults to serving_port_base - 1."
    )
    serving_pool_budget_mb: int = Field(default=2048, ge=16, description="Estimated model memory per worker.")
    serving_pool_max_models: int = Field(default=1000, ge=1, description="Loaded models per worker at most.")

    # Prediction capture (monitoring feedback) inside each serving worker.
    capture_sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    capture_queue_size: int = Field(default=10_000, ge=1)
    capture_batch_size: int = Field(default=500, ge=1, le=10_000)
    capture_flush_interval_s: float = Field(default=1.0, gt=0)
    # Predictions kept per worker so that ground truth sent later can be joined to them.
    feedback_window: int = Field(default=10_000, ge=1)

    @property
    def bentoml_home(self) -> Path:
        """The BentoML model store of this machine's servers."""
        return self.state_dir / "bentoml"

    @property
    def run_dir(self) -> Path:
        """Pid files and logs of the processes the deploy service starts."""
        return self.state_dir / "deploy"

    @property
    def advertised_host(self) -> str:
        """The host clients use to reach the endpoints."""
        return self.serving_advertised_host or self.serving_host

    @property
    def pool_port(self) -> int:
        """The port of the shared workers."""
        return self.serving_pool_port or self.serving_port_base - 1

    @property
    def serving_ports(self) -> range:
        """The ports stable endpoints may listen on."""
        return range(self.serving_port_base, self.serving_port_base + self.serving_port_count)
