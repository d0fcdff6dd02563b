"""The main job as a newcomer runs it: ``conveyor demo`` ends with a real prediction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.integration.processes import free_port

pytestmark = pytest.mark.infra

CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


@pytest.fixture
def demo_env(settings: Settings) -> Iterator[dict[str, str]]:
    """Ports of the demo's own, and its services stopped afterwards."""
    env = {
        **os.environ,
        "CONVEYOR_REGISTRY_PORT": str(free_port()),
        "CONVEYOR_DEPLOY_PORT": str(free_port()),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    yield env
    subprocess.run([CONVEYOR, "down", "--services-only"], env=env, check=False, timeout=120)


def test_demo_serves_a_real_prediction(settings: Settings, demo_env: dict[str, str]) -> None:
    result = subprocess.run(
        [CONVEYOR, "--json", "demo", "--timeout", "600"],
        env=demo_env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = json.loads(result.stdout)
    assert output["prediction"] in (0, 1)
    assert set(output["probabilities"]) == {"0", "1"}
    assert abs(sum(output["probabilities"].values()) - 1) < 1e-6
    assert output["version"] >= 1
    assert len(output["trace_id"]) == 32 and output["prediction_id"]
    assert output["prediction"] == output["actual"]  # the first row is an easy one for this model

    status = subprocess.run([CONVEYOR, "--json", "status"], env=demo_env, capture_output=True, text=True)
    assert status.returncode == 0, status.stdout
    assert {row["name"] for row in json.loads(status.stdout) if row["healthy"]} >= {"registry", "deploy"}
