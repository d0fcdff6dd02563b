"""A single-node Apache Kafka broker in KRaft mode, run from the jars Maven resolves for pom.xml."""

from __future__ import annotations

import asyncio
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from infra import process, steps
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


def server_properties(settings: Settings) -> str:
    """The broker configuration: one node acting as broker and controller, sized for dev and tests."""
    host = settings.kafka_host
    controller = f"{host}:{settings.kafka_controller_port}"
    config = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{controller}",
        "listeners": f"PLAINTEXT://{host}:{settings.kafka_port},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{host}:{settings.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(_data_dir(settings)),
        "num.partitions": str(settings.kafka_partitions),
        "auto.create.topics.enable": "true",
        "message.max.bytes": str(settings.kafka_max_message_bytes),
        "replica.fetch.max.bytes": str(settings.kafka_max_message_bytes),
        # One node: every internal topic has one replica. One partition each (instead of 50)
        # makes the first consumer group and the first transaction start in well under a second.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Tests start consumers one after another; the default 3 s delay would slow every test.
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in config.items())


def kafka_ready(settings: Settings) -> bool:
    """Whether the broker answers a metadata request that lists at least one live broker."""
    if not process.port_open(settings.kafka_host, settings.kafka_port):
        return False  # not listening yet: skip the client, which would log connection errors
    try:
        cluster = _run(_describe_cluster(settings.bootstrap_servers))
    except Exception:  # any failure of the probe means "not ready yet"
        return False
    return bool(cluster.get("brokers"))


def kafka_server(settings: Settings) -> process.Server:
    """The broker as a local process: command, files, ports and readiness probe."""
    config = _config_path(settings)
    logs = settings.state_dir / "logs"
    jvm = ["java", HEAP, "-cp", f"{libs_dir(settings)}/*"]
    logging = [f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", f"-Dkafka.logs.dir={logs}"]
    return process.Server(
        name="kafka",
        argv=[*jvm, *logging, "kafka.Kafka", str(config)],
        address=settings.bootstrap_servers,
        ports=[
            (settings.kafka_host, settings.kafka_port),
            (settings.kafka_host, settings.kafka_controller_port),
        ],
        run_dir=settings.state_dir / "run",
        log=logs / "kafka.log",
        # The JVM's own stdout/stderr (crashes, JVM warnings); the broker logs through log4j2.
        output=logs / "kafka.out",
        ready=lambda: kafka_ready(settings),
        marker=str(config),
        prepare=lambda: _prepare(settings),
    )


def start_kafka(settings: Settings, *, timeout: float = 120.0) -> int:
    """Start the broker (fetching jars and formatting storage on first use); return its pid."""
    return process.start(kafka_server(settings), timeout=timeout)


def stop_kafka(settings: Settings) -> bool:
    """Stop the broker, keeping its data; return whether it was running."""
    return process.stop(kafka_server(settings))


def _prepare(settings: Settings) -> None:
    """Make the jars, the configuration and the formatted log directory ready for a start."""
    process.require("java")
    libs = ensure_libs(settings)
    config = _config_path(settings)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(server_properties(settings))
    if not (_data_dir(settings) / "meta.properties").exists():
        with steps.step("Kafka storage (new log directory)"):
            _format_storage(libs, config)


def _format_storage(libs: Path, config: Path) -> None:
    """Give a fresh log directory its cluster id; KRaft refuses to start on an unformatted one."""
    storage_tool = ["java", "-cp", f"{libs}/*", "kafka.tools.StorageTool"]
    cluster_id = _run_tool([*storage_tool, "random-uuid"]).strip()
    _run_tool([*storage_tool, "format", "-t", cluster_id, "-c", str(config)])


def _run_tool(argv: list[str]) -> str:
    """Run a Kafka command-line tool and return its output; fail with that output."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise process.InfraError(f"{' '.join(argv[3:])} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


async def _describe_cluster(bootstrap_servers: str) -> dict[str, Any]:
    """Ask the broker for cluster metadata with short time-outs, for polling."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=3000)
    try:
        await admin.start()
        return await admin.describe_cluster()
    finally:
        await admin.close()


def _run(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run a coroutine on its own loop in a worker thread, so callers may already run a loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _config_path(settings: Settings) -> Path:
    return settings.state_dir / "kafka" / "server.properties"


def _data_dir(settings: Settings) -> Path:
    return settings.state_dir / "kafka" / "data"
