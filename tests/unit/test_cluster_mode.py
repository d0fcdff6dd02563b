"""Cluster mode's pure parts: broker ports and configuration, replica names and options, SASL and ACLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.kafka import brokers, server_properties
from infra.kafka_access import acl_commands, ensure_passwords, format_arguments, service_principal
from infra.services import parse_replicas, service_server, service_servers
from shared import topics
from shared.events import ALL_EVENTS
from shared.messaging.acls import CONSUMES, PRINCIPALS, SERVICES, acls, may_write
from shared.messaging.security import KafkaCredentialsMissing, broker_security, client_options
from shared.settings import Settings
from shared.topics import dead_letter_topic


def cluster(tmp_path: Path, count: int = 3) -> Settings:
    return Settings(
        state_dir=tmp_path,
        kafka_port=16092,
        kafka_controller_port=16093,
        kafka_brokers=count,
        kafka_bootstrap_servers=None,
    )


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_one_broker_keeps_its_single_node_layout(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, kafka_port=19092, kafka_brokers=1, kafka_bootstrap_servers=None)
    (only,) = brokers(settings)
    assert (only.name, only.home) == ("kafka", tmp_path / "kafka")
    config = properties(server_properties(settings))
    assert config["offsets.topic.replication.factor"] == "1" and config["min.insync.replicas"] == "1"
    assert settings.bootstrap_servers == "127.0.0.1:19092"


def test_three_brokers_form_one_quorum_each_with_its_own_ports_and_logs(tmp_path: Path) -> None:
    settings = cluster(tmp_path).model_copy(update={"kafka_cluster_port_base": 16094})
    nodes = brokers(settings)
    assert [(b.port, b.controller_port) for b in nodes] == [(16092, 16093), (16094, 16095), (16096, 16097)]
    assert len({b.data for b in nodes}) == 3
    assert settings.bootstrap_servers == "127.0.0.1:16092,127.0.0.1:16094,127.0.0.1:16096"
    configs = [properties(server_properties(settings, b)) for b in nodes]
    assert {c["controller.quorum.voters"] for c in configs} == {
        "1@127.0.0.1:16093,2@127.0.0.1:16095,3@127.0.0.1:16097"
    }
    assert [c["node.id"] for c in configs] == ["1", "2", "3"]
    for config in configs:
        assert config["default.replication.factor"] == "3" and config["min.insync.replicas"] == "2"
        assert config["offsets.topic.replication.factor"] == "3"


def test_two_brokers_keep_writes_going_when_one_dies(tmp_path: Path) -> None:
    config = properties(server_properties(cluster(tmp_path, count=2)))
    assert config["default.replication.factor"] == "2" and config["min.insync.replicas"] == "1"


def test_replica_options_parse_and_refuse_what_cannot_scale() -> None:
    assert parse_replicas("train=2, ingest=3") == {"train": 2, "ingest": 3}
    assert parse_replicas("") == {}
    for bad, reason in [
        ("deploy=2", "cannot scale"),
        ("train=0", "1 to 6"),
        ("train", "1 to 6"),
        ("x=2", "cannot"),
    ]:
        with pytest.raises(ValueError, match=reason):
            parse_replicas(bad)


def test_replicas_have_their_own_names_logs_and_registry_ports(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, registry_port=18000, kafka_brokers=1)
    servers = {s.name: s for s in service_servers(settings, {"registry": 2, "train": 2})}
    assert set(servers) == {
        "registry",
        "registry-2",
        "ingest",
        "train",
        "train-2",
        "evaluate",
        "deploy",
        "console",
    }
    assert servers["registry-2"].ports == [("127.0.0.1", 18001)]
    assert servers["registry-2"].env["CONVEYOR_REGISTRY_REPLICAS"] == "2"
    # The second replica serves the registry's address beside the first, so losing either loses no address.
    assert servers["registry-2"].env["CONVEYOR_REGISTRY_URL"] == "http://127.0.0.1:18000"
    assert "CONVEYOR_REGISTRY_URL" not in servers["registry"].env
    assert servers["train-2"].output.name == "train-2.log"
    assert servers["train-2"].argv[-1] == "services.train"
    assert service_server("train", settings).env["CONVEYOR_KAFKA_BROKERS"] == "1"


def sasl_cluster(tmp_path: Path) -> Settings:
    settings = cluster(tmp_path).model_copy(update={"kafka_sasl": True})
    ensure_passwords(settings)
    return settings


def test_sasl_is_off_by_default_and_the_brokers_stay_plaintext(tmp_path: Path) -> None:
    settings = cluster(tmp_path)
    config = properties(server_properties(settings))
    assert not settings.kafka_sasl and client_options(settings) == {} and broker_security(settings) is None
    assert config["listeners"].startswith("PLAINTEXT://") and "authorizer.class.name" not in config
    assert service_principal(settings, "registry") == {}
    assert not (tmp_path / "secrets.json").exists()


def test_sasl_brokers_take_scram_clients_and_deny_what_no_acl_allows(tmp_path: Path) -> None:
    settings = sasl_cluster(tmp_path)
    config = properties(server_properties(settings))
    assert config["listeners"] == "SASL_PLAINTEXT://127.0.0.1:16092,CONTROLLER://127.0.0.1:16093"
    assert (
        config["listener.security.protocol.map"] == "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    )
    assert config["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert config["sasl.mechanism.controller.protocol"] == "PLAIN"  # SCRAM cannot serve the controllers
    assert config["allow.everyone.if.no.acl.found"] == "false"
    assert config["super.users"] == "User:broker;User:admin;User:controller"
    assert "ANONYMOUS" not in config["super.users"]
    # Every password is random, kept in the state directory readable by its owner only.
    secrets = tmp_path / "secrets.json"
    assert secrets.stat().st_mode & 0o777 == 0o600
    keys = json.loads(secrets.read_text())["kafka"]
    assert set(keys) == {*PRINCIPALS, "controller"} and len(set(keys.values())) == len(keys)
    assert all(
        f"name={name},password={keys[name]}]" in " ".join(format_arguments(settings)) for name in PRINCIPALS
    )


def test_each_service_gets_its_own_principal_and_clients_the_cli_one(tmp_path: Path) -> None:
    settings = sasl_cluster(tmp_path)
    keys = json.loads((tmp_path / "secrets.json").read_text())["kafka"]
    env = service_server("registry", settings).env
    assert env["CONVEYOR_KAFKA_SASL_USERNAME"] == "registry"
    assert env["CONVEYOR_KAFKA_SASL_PASSWORD"] == keys["registry"]
    client = Settings(state_dir=tmp_path, kafka_sasl=True)  # the CLI or SDK: no variable names a principal
    assert client_options(client)["sasl_plain_username"] == "cli"
    assert client_options(client)["sasl_plain_password"] == keys["cli"]
    named = Settings(state_dir=tmp_path, kafka_sasl=True, kafka_sasl_username="admin")
    assert client_options(named)["sasl_plain_password"] == keys["admin"]


def test_sasl_without_credentials_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(KafkaCredentialsMissing, match="CONVEYOR_KAFKA_SASL_USERNAME"):
        client_options(Settings(state_dir=tmp_path, kafka_sasl=True))


def test_only_the_registry_may_write_the_approval_topics() -> None:
    for topic in (
        topics.MODEL_REGISTERED,
        topics.MODEL_APPROVED,
        topics.MODEL_REJECTED,
        topics.MODEL_PROMOTED,
    ):
        writers = {p for p in PRINCIPALS if may_write(p, topic)}
        assert writers == {"registry", "admin", "broker"}, topic
    assert may_write("cli", topics.DATA_ARRIVED) and not may_write("cli", topics.MODEL_EVALUATED)
    assert may_write("deploy", dead_letter_topic(topics.MODEL_APPROVED))
    assert not may_write("ingest", dead_letter_topic(topics.MODEL_APPROVED))
    # Every event some service publishes has a writer; a service "creates" only topics it consumes.
    assert all(any(may_write(p, e.topic) for p in (*SERVICES, "cli")) for e in ALL_EVENTS)
    assert {rule.operation for rule in acls()} == {"READ", "WRITE", "CREATE", "IDEMPOTENT_WRITE"}
    assert {(r.principal, r.name) for r in acls() if r.operation == "CREATE"} == {
        (service, topic) for service, consumed in CONSUMES.items() for topic in consumed
    }


def test_the_acls_print_as_kafka_acls_commands_for_a_kafka_conveyor_does_not_run() -> None:
    lines = acl_commands("kafka:9092")
    assert len(lines) == len(acls())
    approval = f"--operation Write --topic '{topics.MODEL_APPROVED}'"
    assert [line.split("User:")[1].split()[0] for line in lines if approval in line] == ["registry"]
