"""The Helm chart renders, offline, into objects that Kubernetes' own schemas accept and that match the code.

helm is built from its Go module once and cached (infra/helm.py); kubernetes-validate holds the
schemas of each Kubernetes release, so no cluster is needed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from infra import helm
from services.deploy.settings import DeploySettings
from shared.settings import Settings

KUBERNETES = "1.37.0"
SERVICES = ("registry", "ingest", "train", "evaluate", "deploy")
HTTP = {"registry": 8000, "deploy": 8100}
VALUES = [None, *sorted(helm.EXAMPLES.glob("*.yaml"))]
SETTINGS = {f"CONVEYOR_{name.upper()}" for name in DeploySettings.model_fields}


def _render(values: Path | None) -> list[dict[str, Any]]:
    text = helm.render(Settings(), values=[values] if values else None)
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module", params=VALUES, ids=lambda v: v.name if v else "defaults")
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return _render(request.param)


def _of(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["labels"].get("app.kubernetes.io/name", o["metadata"]["name"]): o
        for o in objects
        if o["kind"] == kind
    }


def test_every_object_is_valid_for_kubernetes(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)  # raises with the failing path


def test_a_deployment_runs_each_service_module(objects: list[dict[str, Any]]) -> None:
    deployments = _of(objects, "Deployment")
    assert sorted(deployments) == sorted(SERVICES)
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert importlib.util.find_spec(f"services.{name}.__main__") is not None
        assert container["resources"]["requests"] and container["resources"]["limits"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_settings_come_from_the_configmap_and_secrets_by_reference(objects: list[dict[str, Any]]) -> None:
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert set(config["data"]) <= SETTINGS, set(config["data"]) - SETTINGS
    for deployment in _of(objects, "Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        for variable in container["env"]:
            assert variable["name"] in SETTINGS, variable["name"]
            if variable["name"].endswith(("_SECRET_KEY", "_ACCESS_KEY", "_TOKENS")):
                assert "secretKeyRef" in variable["valueFrom"], variable


def test_a_service_given_its_own_minio_user_reads_its_keys_from_its_own_secret(tmp_path: Path) -> None:
    values = tmp_path / "own-users.yaml"
    values.write_text("services:\n  ingest:\n    minioCredentialsSecret: conveyor-minio-ingest\n")
    text = helm.render(Settings(), values=[values])
    deployments = _of([doc for doc in yaml.safe_load_all(text) if doc], "Deployment")
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        secrets = {
            v["valueFrom"]["secretKeyRef"]["name"]
            for v in container["env"]
            if v["name"].startswith("CONVEYOR_MINIO_")
        }
        assert secrets == {"conveyor-minio-ingest" if name == "ingest" else "conveyor-minio"}, name


def test_http_services_are_probed_on_their_health_routes(objects: list[dict[str, Any]]) -> None:
    deployments = _of(objects, "Deployment")
    for name, port in HTTP.items():
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["ports"][0] == {"name": "http", "containerPort": port, "protocol": "TCP"}
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        listen = {v["name"]: v.get("value") for v in container["env"]}
        assert listen[f"CONVEYOR_{name.upper()}_HOST"] == "0.0.0.0"


def test_services_select_their_pods_and_publish_the_endpoint_range(objects: list[dict[str, Any]]) -> None:
    deployments = _of(objects, "Deployment")
    for name, service in _of(objects, "Service").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
    deploy = _of(objects, "Service")["deploy"]["spec"]["ports"]
    (container,) = deployments["deploy"]["spec"]["template"]["spec"]["containers"]
    env = {v["name"]: v.get("value") for v in container["env"]}
    base, count = int(env["CONVEYOR_SERVING_PORT_BASE"]), int(env["CONVEYOR_SERVING_PORT_COUNT"])
    assert sorted(p["port"] for p in deploy[1:]) == list(range(base, base + count))
    assert deployments["deploy"]["spec"]["replicas"] == 1
    assert deployments["deploy"]["spec"]["strategy"]["type"] == "Recreate"


def test_each_deployment_has_a_disruption_budget(objects: list[dict[str, Any]]) -> None:
    deployments, budgets = _of(objects, "Deployment"), _of(objects, "PodDisruptionBudget")
    assert sorted(budgets) == sorted(deployments)
    for name, budget in budgets.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_registry_replicas_know_they_share_the_journal(objects: list[dict[str, Any]]) -> None:
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    replicas = _of(objects, "Deployment")["registry"]["spec"]["replicas"]
    assert config["data"]["CONVEYOR_REGISTRY_REPLICAS"] == str(replicas)


def test_a_bad_value_is_refused_by_the_schemas() -> None:
    (deployment, *_) = [o for o in _render(None) if o["kind"] == "Deployment"]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
