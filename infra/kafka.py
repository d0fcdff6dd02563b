"""Apache Kafka in KRaft mode, run from the jars Maven resolves for pom.xml.

One node (broker and controller) by default. With ``CONVEYOR_KAFKA_BROKERS=N`` (opt-in) N such
nodes form one cluster on this machine: each its own log directory, ports and pidfile, all
formatted with one cluster id, the N controllers voting as the metadata quorum. The cluster keeps
its files under ``<state>/kafka-cluster/`` so that single-broker state is never touched by it.
"""

from __future__ import annotations

import asyncio
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from infra import kafka_access, process, steps
from shared.events import ALL_EVENTS
from shared.messaging import ensure_topics
from shared.messaging.security import client_options
from shared.settings import Settings

HERE = Path(__file__).parent / "kafka"
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.properties"
HEAP = "-Xmx512m"


def kafka_version() -> str:
    """The Kafka version pinned in pom.xml, the one place it is written."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.parse(POM).findtext("m:properties/m:kafka.version", namespaces=namespace)
    if not version:
        raise process.InfraError(f"no <kafka.version> property in {POM}")
    return version


def libs_dir(settings: Settings) -> Path:
    """Where the broker's jars are cached, one directory per Kafka version."""
    return settings.cache_dir / f"kafka-{kafka_version()}" / "libs"


def ensure_libs(settings: Settings) -> Path:
    """Fetch the broker's jars with Maven unless a complete copy is cached; return their directory."""
    libs = libs_dir(settings)
    # Written only after Maven succeeds, so an interrupted download is fetched again.
    complete = libs.with_name("libs.complete")
    if not complete.exists():
        maven = ["mvn", "-B", "--no-transfer-progress", "-Dstyle.color=never", "-f", str(POM)]
        goal = ["dependency:copy-dependencies", f"-DoutputDirectory={libs}", "-DincludeScope=runtime"]
        process.run_build(
            [*maven, *goal],
            what=f"Kafka {kafka_version()} jars (first run only)",
            log=settings.state_dir / "logs" / "kafka-jars.log",
        )
        complete.write_text(kafka_version() + "\n")
    return libs


@dataclass(frozen=True)
class Broker:
    """One node of the local Kafka: its id, ports and files."""

    node_id: int
    port: int
    controller_port: int
    name: str
    home: Path

    @property
    def config(self) -> Path:
        """Its server.properties."""
        return self.home / "server.properties"

    @property
    def data(self) -> Path:
        """Its log directory."""
        return self.home / "data"


def brokers(settings: Settings) -> list[Broker]:
    """Every local broker: one named ``kafka``, or ``kafka-1``..``kafka-N`` in cluster mode."""
    if settings.kafka_brokers == 1:
        port, controller = settings.kafka_broker_ports[0]
        return [Broker(1, port, controller, "kafka", settings.state_dir / "kafka")]
    cluster = _cluster_dir(settings)
    return [
        Broker(n, port, controller, f"kafka-{n}", cluster / f"broker-{n}")
        for n, (port, controller) in enumerate(settings.kafka_broker_ports, start=1)
    ]


def server_properties(settings: Settings, broker: Broker | None = None) -> str:
    """A node's configuration: broker and controller at once, sized for dev and tests."""
    broker = broker or brokers(settings)[0]
    host = settings.kafka_host
    controller = f"{host}:{broker.controller_port}"
    voters = ",".join(f"{b.node_id}@{host}:{b.controller_port}" for b in brokers(settings))
    # Internal topics are replicated like Conveyor's own: min(3, brokers) copies, 2 in sync on a cluster.
    replicas = str(settings.kafka_replication_factor)
    min_isr = "2" if settings.kafka_replication_factor >= 3 else "1"
    config = {
        "process.roles": "broker,controller",
        "node.id": str(broker.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{host}:{broker.port},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{host}:{broker.port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(broker.data),
        "num.partitions": str(settings.kafka_partitions),
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "auto.create.topics.enable": "true",
        "message.max.bytes": str(settings.kafka_max_message_bytes),
        "replica.fetch.max.bytes": str(settings.kafka_max_message_bytes),
        # One partition each (instead of 50) makes the first consumer group and the first
        # transaction start in well under a second.
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        # Tests start consumers one after another; the default 3 s delay would slow every test.
        "group.initial.rebalance.delay.ms": "0",
    }
    if settings.kafka_sasl:  # opt-in: SCRAM per principal, ACLs (infra.kafka_access)
        config.update(
            kafka_access.sasl_properties(settings, host=host, port=broker.port, controller=controller)
        )
    return "".join(f"{key}={value}\n" for key, value in config.items())


def kafka_ready(settings: Settings) -> bool:
    """Whether every configured broker is up: the cluster's metadata lists all of them."""
    return len(_live_brokers(settings, settings.bootstrap_servers)) >= settings.kafka_brokers


def broker_ready(settings: Settings, broker: Broker) -> bool:
    """Whether this broker answers a metadata request and the cluster lists it as live."""
    if not process.port_open(settings.kafka_host, broker.port):
        return False  # not listening yet: skip the client, which would log connection errors
    return broker.node_id in _live_brokers(settings, f"{settings.kafka_host}:{broker.port}")


def _live_brokers(settings: Settings, bootstrap: str) -> set[int]:
    """The node ids a metadata request through ``bootstrap`` lists (empty when it fails)."""
    if not any(process.port_open(*_host_port(address)) for address in bootstrap.split(",")):
        return set()
    try:
        cluster = _run(_describe_cluster(bootstrap, options=_probe_options(settings)))
    except Exception:  # any failure of the probe means "not ready yet"
        return set()
    return {int(b["node_id"]) for b in cluster.get("brokers", [])}


def kafka_servers(settings: Settings) -> list[process.Server]:
    """Every broker as a local process."""
    return [broker_server(settings, broker) for broker in brokers(settings)]


def kafka_server(settings: Settings) -> process.Server:
    """The first (in single-broker mode the only) broker as a local process."""
    return kafka_servers(settings)[0]


def broker_server(settings: Settings, broker: Broker) -> process.Server:
    """One broker as a local process: command, files, ports and readiness probe."""
    logs = settings.state_dir / "logs"
    jvm = ["java", HEAP, "-cp", f"{libs_dir(settings)}/*"]
    # Each broker its own log4j file: kafka.log, or kafka-N.log in cluster mode.
    logging = [
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={logs}",
        f"-Dkafka.log.name={broker.name}",
    ]
    return process.Server(
        name=broker.name,
        argv=[*jvm, *logging, "kafka.Kafka", str(broker.config)],
        address=f"{settings.kafka_host}:{broker.port}",
        ports=[(settings.kafka_host, broker.port), (settings.kafka_host, broker.controller_port)],
        run_dir=settings.state_dir / "run",
        log=logs / f"{broker.name}.log",
        # The JVM's own stdout/stderr (crashes, JVM warnings); the broker logs through log4j2.
        output=logs / f"{broker.name}.out",
        ready=lambda: broker_ready(settings, broker),
        marker=str(broker.config),
        prepare=lambda: _prepare(settings, broker),
    )


def start_kafka(settings: Settings, *, timeout: float = 120.0) -> int:
    """Start every broker not running (fetching jars, formatting storage on first use); return broker 1's pid.

    A cluster's brokers start side by side: none is ready before a quorum of controllers runs.
    """
    servers = kafka_servers(settings)
    if settings.kafka_sasl:
        kafka_access.ensure_passwords(settings)  # once, before any broker's configuration is written
    if len(servers) == 1:
        pid = process.start(servers[0], timeout=timeout)
        _apply_access(settings)
        return pid
    ensure_libs(settings)  # once, before the brokers start in parallel
    _ensure_cluster_id(settings)
    # Recorded, so that a plain `conveyor down` (without CONVEYOR_KAFKA_BROKERS) stops them too.
    (_cluster_dir(settings) / "brokers").write_text(f"{settings.kafka_brokers}\n")
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        pids = list(pool.map(lambda server: process.start(server, timeout=timeout), servers))
    _apply_access(settings)
    return pids[0]


def start_broker(settings: Settings, node_id: int, *, timeout: float = 120.0) -> int:
    """Start one broker of the cluster (the others running); return its pid."""
    broker = brokers(settings)[node_id - 1]
    return process.start(broker_server(settings, broker), timeout=timeout)


def stop_kafka(settings: Settings) -> bool:
    """Stop every broker, keeping their data; return whether any was running.

    A cluster started earlier in this state directory is stopped too, even when the settings
    now ask for one broker.
    """
    servers = kafka_servers(settings)
    recorded = _cluster_dir(settings) / "brokers"
    if settings.kafka_brokers == 1 and recorded.exists():
        cluster = settings.model_copy(update={"kafka_brokers": int(recorded.read_text())})
        servers += kafka_servers(cluster)
    if len(servers) == 1:
        return process.stop(servers[0])
    # Side by side: stopped one by one, the last broker waits in vain for a controller quorum.
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        return any(list(pool.map(process.stop, servers)))


def _prepare(settings: Settings, broker: Broker) -> None:
    """Make the jars, the configuration and the formatted log directory ready for a start."""
    process.require("java")
    libs = ensure_libs(settings)
    broker.config.parent.mkdir(parents=True, exist_ok=True)
    if settings.kafka_sasl:  # the file then holds the brokers' own passwords
        broker.config.touch(mode=0o600)
        broker.config.chmod(0o600)
        kafka_access.check_formatted_for_sasl(broker.home, broker.data)
    broker.config.write_text(server_properties(settings, broker))
    if not (broker.data / "meta.properties").exists():
        cluster_id = _ensure_cluster_id(settings) if settings.kafka_brokers > 1 else None
        scram = kafka_access.format_arguments(settings) if settings.kafka_sasl else []
        with steps.step(f"Kafka storage (new log directory of {broker.name})"):
            _format_storage(libs, broker.config, cluster_id=cluster_id, extra=scram)
        if settings.kafka_sasl:
            (broker.home / kafka_access.MARKER).touch()


def _ensure_cluster_id(settings: Settings) -> str:
    """The one cluster id every broker of the local cluster is formatted with (made on first use)."""
    path = _cluster_dir(settings) / "cluster.id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        libs = ensure_libs(settings)
        cluster_id = _run_tool(["java", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "random-uuid"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(cluster_id.strip() + "\n")
        tmp.replace(path)
    return path.read_text().strip()


def _format_storage(
    libs: Path, config: Path, *, cluster_id: str | None = None, extra: list[str] | None = None
) -> None:
    """Give a fresh log directory its cluster id; KRaft refuses to start on an unformatted one.

    ``extra``: further arguments, such as the SCRAM credentials of SASL mode.
    """
    storage_tool = ["java", "-cp", f"{libs}/*", "kafka.tools.StorageTool"]
    cluster_id = cluster_id or _run_tool([*storage_tool, "random-uuid"]).strip()
    _run_tool([*storage_tool, "format", "-t", cluster_id, "-c", str(config), *(extra or [])])


def _apply_access(settings: Settings) -> None:
    """In SASL mode: principals and ACLs, then Conveyor's topics, created by ``admin``.

    The services may not create topics themselves (shared.messaging.acls), so they exist before
    any service starts.
    """
    if not settings.kafka_sasl:
        return
    with steps.step("Kafka principals and ACLs (SASL)"):
        kafka_access.apply_access(settings, libs_dir(settings))
        topics = [event.topic for event in ALL_EVENTS]
        _run_none(ensure_topics(kafka_access.as_admin(settings), topics))


def _probe_options(settings: Settings) -> dict[str, Any]:
    """How readiness probes connect: as ``admin`` in SASL mode, else plainly."""
    return client_options(kafka_access.as_admin(settings)) if settings.kafka_sasl else {}


def _run_tool(argv: list[str]) -> str:
    """Run a Kafka command-line tool and return its output; fail with that output."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise process.InfraError(f"{' '.join(argv[3:])} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


async def _describe_cluster(bootstrap_servers: str, *, options: dict[str, Any]) -> dict[str, Any]:
    """Ask the broker for cluster metadata with short time-outs, for polling."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=3000, **options)
    try:
        await admin.start()
        return await admin.describe_cluster()
    finally:
        await admin.close()


def _run(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run a coroutine on its own loop in a worker thread, so callers may already run a loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _run_none(coro: Coroutine[Any, Any, None]) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coro).result()


def _cluster_dir(settings: Settings) -> Path:
    return settings.state_dir / "kafka-cluster"


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return host, int(port)
