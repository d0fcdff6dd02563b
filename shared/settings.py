"""The one settings model: every value comes from a ``CONVEYOR_*`` environment variable."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shared.secrets import WELL_KNOWN_MINIO_SECRET, WELL_KNOWN_TOKEN, LocalSecretsSource


class Settings(BaseSettings):
    """Configuration shared by every service, the infrastructure scripts and the tests.

    Defaults work on one machine; services extend this class where they need more.
    """

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore")

    # Kafka
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="host:port list; defaults to kafka_host:kafka_port"
    )
    # Six, so that up to six replicas of a service share its consumer group; topics that already
    # exist keep their partition count (ensure_topics only creates missing ones).
    kafka_partitions: int = Field(default=6, ge=1)
    # Cluster mode (opt-in): brokers 2..N listen on kafka_cluster_port_base + 2*(n-2), their
    # controllers one port above; broker 1 keeps kafka_port and kafka_controller_port.
    kafka_brokers: int = Field(default=1, ge=1, le=5)
    kafka_cluster_port_base: int = 9094
    # How old a client's cluster metadata may get: short, so a restarted broker is known again soon.
    kafka_metadata_max_age_ms: int = Field(default=10_000, ge=1000)
    # Large enough that an oversized event still reaches the consumer (and so its dead-letter topic)
    # instead of being refused by the producer with no trace.
    kafka_max_message_bytes: int = 16 * 1024 * 1024
    # Opt-in: brokers accept only SASL/SCRAM-SHA-512 clients, each service as its own principal, and
    # ACLs decide who writes which topic (shared.messaging.acls). Unset credentials: the state
    # directory's (secrets.json, principal ``cli`` unless CONVEYOR_KAFKA_SASL_USERNAME names another).
    kafka_sasl: bool = False
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None

    # MinIO / S3
    minio_host: str = "127.0.0.1"
    minio_port: int = 9000
    minio_console_port: int = 9001
    minio_endpoint: str | None = Field(
        default=None, description="host:port; defaults to minio_host:minio_port"
    )
    # Opt-in erasure coding on one machine: 4 drive directories form one erasure set (EC:2).
    minio_drives: int = Field(default=1, ge=1, le=16)
    minio_access_key: str = "conveyor"
    # Local-development credential only; set CONVEYOR_MINIO_SECRET_KEY anywhere else.
    # Without it, <state_dir>/secrets.json (written by the first `conveyor up`), else this value,
    # which no service accepts beyond loopback (shared.secrets).
    minio_secret_key: SecretStr = SecretStr(WELL_KNOWN_MINIO_SECRET)
    minio_secure: bool = False
    landing_bucket: str = "conveyor-landing"
    artifacts_bucket: str = "conveyor-artifacts"

    # Each service consumes in the group "<prefix>-<service>"; another prefix is another, separate deployment.
    consumer_group_prefix: str = Field(default="conveyor", pattern=r"^[A-Za-z0-9._-]{1,100}$")

    # Consumption: bounded retries for transient errors, then the dead-letter topic.
    max_event_bytes: int = 1024 * 1024
    # About 45 s in all: long enough for a server or a peer service to restart, short enough
    # that a message which cannot succeed reaches its dead-letter topic within a minute.
    retry_attempts: int = 8
    retry_initial_backoff_s: float = 0.5
    retry_max_backoff_s: float = 15.0
    # Above the slowest handler (training), so a long fit does not make the consumer leave its group.
    max_poll_interval_ms: int = 30 * 60 * 1000
    # A consumer learns that its group is rebalancing only at its next heartbeat. A service's
    # subscribers join their groups one after another, so at Kafka's default 3 s each join after
    # the first waits up to 3 s: the registry took 3 s of its 4.6 s restart to join its group.
    kafka_heartbeat_interval_ms: int = Field(default=500, ge=100, le=10_000)

    # HTTP services: where they listen, and where clients find them.
    registry_host: str = "127.0.0.1"
    registry_port: int = 8000
    registry_url: str | None = Field(
        default=None, description="defaults to http://registry_host:registry_port"
    )

    # Registry processes sharing one journal (`conveyor up --replicas registry=2`). Above 1, every
    # read first folds in the journal entries other replicas appended; writes are fenced always.
    registry_replicas: int = Field(default=1, ge=1)

    deploy_host: str = "127.0.0.1"
    deploy_port: int = 8100
    deploy_url: str | None = Field(default=None, description="defaults to http://deploy_host:deploy_port")

    # Who may change things through the HTTP APIs: {"<token>": {"user": ..., "role": "approver"}}.
    # Roles: reader, approver, operator, admin (shared.auth). Unset: the state directory's random
    # admin token (secrets.json), else a well-known token that no service accepts beyond loopback.
    api_tokens: SecretStr = SecretStr(
        f'{{"{WELL_KNOWN_TOKEN}": {{"user": "local-approver", "role": "approver"}}}}'
    )

    # The token this client (the CLI, the SDK) presents to the HTTP APIs, when one is needed;
    # unset, the state directory's (shared.secrets.approver_token).
    api_token: SecretStr | None = None

    # Recorded in every model's lineage: the image the training service runs in, when it is one.
    training_image: str | None = None

    # Data scale (ingest, train)
    # Ingest refuses (DatasetRejected, rule source.size) a file it would need more memory than this
    # to decode and validate, rather than being killed for running out of it.
    ingest_max_memory_mb: int = Field(default=8192, ge=16)
    # Processes for train's search and cross-validation; 0 means one per core of the machine.
    train_n_jobs: int = Field(default=0, ge=0)
    # Models evaluate keeps loaded (by their artifacts' size): a candidate it scores now is the
    # champion that the pipeline's next candidate is compared with.
    evaluate_model_cache_mb: int = Field(default=256, ge=0)
    # The console (services/console): a browser view of the events and APIs.
    console_host: str = "127.0.0.1"
    console_port: int = 8300
    console_url: str | None = Field(default=None, description="defaults to http://console_host:console_port")
    # Signs the console's CSRF tokens; unset, each console process draws its own (forms reload).
    console_secret: SecretStr | None = None

    # Telemetry
    otlp_endpoint: str | None = None
    # Jaeger, opt-in: `make up` with CONVEYOR_JAEGER=1 also starts it (built once from its Go module);
    # services then export to its OTLP port unless CONVEYOR_OTLP_ENDPOINT names another collector.
    jaeger: bool = False
    jaeger_host: str = "127.0.0.1"
    jaeger_otlp_port: int = 4318
    jaeger_query_port: int = 16686
    jaeger_query_grpc_port: int = 16685
    jaeger_query_url: str | None = Field(default=None, description="where the console asks for traces")
    # Every finished span appended here as a JSON line (tests, or a look without a trace viewer).
    trace_file: Path | None = None

    # Local infrastructure (make up / make down)
    state_dir: Path = Path.home() / ".local" / "state" / "conveyor"
    cache_dir: Path = Path.home() / ".cache" / "conveyor"
    # Opt-in only: `make up` runs Kafka and MinIO as local processes unless a Docker engine answers
    # and this is set (CONVEYOR_USE_DOCKER=1).
    use_docker: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then CONVEYOR_* variables, then the state directory's generated secrets."""
        local = LocalSecretsSource(settings_cls, init_settings, env_settings)
        return init_settings, env_settings, dotenv_settings, file_secret_settings, local

    @property
    def bootstrap_servers(self) -> str:
        """Where Kafka clients connect (every broker of a local cluster, so any one may be down)."""
        if self.kafka_bootstrap_servers:
            return self.kafka_bootstrap_servers
        return ",".join(f"{self.kafka_host}:{port}" for port, _ in self.kafka_broker_ports)

    @property
    def kafka_broker_ports(self) -> list[tuple[int, int]]:
        """(client port, controller port) of each local broker, broker 1 first."""
        extra = [
            (self.kafka_cluster_port_base + 2 * n, self.kafka_cluster_port_base + 2 * n + 1)
            for n in range(self.kafka_brokers - 1)
        ]
        return [(self.kafka_port, self.kafka_controller_port), *extra]

    @property
    def kafka_replication_factor(self) -> int:
        """Replicas of each Conveyor topic: min(3, brokers)."""
        return min(3, self.kafka_brokers)

    @property
    def registry_base_url(self) -> str:
        """Where clients reach the registry's HTTP API."""
        return (self.registry_url or f"http://{self.registry_host}:{self.registry_port}").rstrip("/")

    @property
    def deploy_base_url(self) -> str:
        """Where clients reach the deploy service's HTTP API."""
        return (self.deploy_url or f"http://{self.deploy_host}:{self.deploy_port}").rstrip("/")

    @property
    def console_base_url(self) -> str:
        """Where a browser reaches the console."""
        return (self.console_url or f"http://{self.console_host}:{self.console_port}").rstrip("/")

    @property
    def otlp_export_endpoint(self) -> str | None:
        """Where services export spans: the configured collector, else the Jaeger `make up` starts."""
        if self.otlp_endpoint:
            return self.otlp_endpoint
        return f"http://{self.jaeger_host}:{self.jaeger_otlp_port}" if self.jaeger else None

    @property
    def jaeger_query_base_url(self) -> str | None:
        """Where Jaeger's query API answers, when one is configured or started by `make up`."""
        if self.jaeger_query_url:
            return self.jaeger_query_url.rstrip("/")
        return f"http://{self.jaeger_host}:{self.jaeger_query_port}" if self.jaeger else None

    @property
    def s3_endpoint(self) -> str:
        """Where the MinIO client connects (host:port)."""
        return self.minio_endpoint or f"{self.minio_host}:{self.minio_port}"
