"""Cluster mode's pure parts: broker ports and configuration, replica names, ports and options."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.kafka import brokers, server_properties
from infra.services import parse_replicas, service_server, service_servers
from shared.settings import Settings


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
    assert servers["train-2"].output.name == "train-2.log"
    assert servers["train-2"].argv[-1] == "services.train"
    assert service_server("train", settings).env["CONVEYOR_KAFKA_BROKERS"] == "1"
