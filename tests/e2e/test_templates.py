"""Project templates as a team uses them: ``conveyor init``, then the commands its CI workflow and
README give, ending with a prediction from the endpoint, for every template.

Both projects go through one running stack at once. The prediction is also checked against the
approved artifact loaded in-process: the templates declare derived columns, computed inside the model.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from shared.events import (
    DatasetRejected,
    DeploymentFailed,
    ModelApproved,
    ModelDeployed,
    ModelRejected,
    TrainingFailed,
)
from shared.model_format import load_model
from shared.project_templates import DATA_FILE, TEMPLATES, WORKFLOW_FILE
from tests.e2e.conftest import Stack, service_env

pytestmark = pytest.mark.infra

CONVEYOR = str(Path(sys.executable).with_name("conveyor"))
FAILURES = (DatasetRejected, TrainingFailed, ModelRejected, DeploymentFailed)


def conveyor(command: str, *, cwd: Path, env: dict[str, str]) -> str:
    """Run one ``conveyor ...`` line as a shell would split it; its output, or fail with it."""
    args = shlex.split(command)
    assert args[0] == "conveyor", command
    result = subprocess.run(
        [CONVEYOR, *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout


def workflow_commands(project: Path) -> list[str]:
    """The ``conveyor`` lines of the workflow: the check job's, then the publish job's."""
    workflow = yaml.safe_load((project / WORKFLOW_FILE).read_text())
    assert workflow[True]["pull_request"] is None and workflow[True]["push"] == {"branches": ["main"]}
    jobs = workflow["jobs"]
    assert jobs["publish"]["needs"] == "check" and jobs["publish"]["if"] == "github.event_name == 'push'"
    runs = [step["run"] for job in ("check", "publish") for step in jobs[job]["steps"] if "run" in step]
    return [run for run in runs if run.startswith("conveyor ")]


async def deployed_model(stack: Stack, correlation_id: uuid.UUID) -> tuple[ModelDeployed, Any]:
    """Wait for the chain to deploy (failing at once if it stops); the approved model, loaded."""
    event = await stack.watcher.wait_for(ModelDeployed, *FAILURES, correlation_id=correlation_id, timeout=300)
    assert isinstance(event, ModelDeployed), event.model_dump_json()
    approved = stack.watcher.events(ModelApproved, correlation_id=correlation_id)[0]
    return event, load_model(stack.store.get(approved.model))


@pytest.fixture
def cli_env(stack: Stack) -> dict[str, str]:
    """The environment of a user whose CLI points at the stack."""
    return {**os.environ, **service_env(stack.settings)}


async def test_each_template_goes_from_init_to_a_prediction(
    stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    projects: dict[str, tuple[str, Path, uuid.UUID]] = {}
    for template in TEMPLATES:
        name = f"tpl-{template[:5]}-{uuid.uuid4().hex[:6]}"
        project = tmp_path / name
        conveyor(
            f"conveyor init {name} --template {template} --directory {project}", cwd=tmp_path, env=cli_env
        )
        commands = workflow_commands(project)
        assert commands == [
            "conveyor pipeline check pipeline.yaml",
            "conveyor pipeline apply pipeline.yaml",
            f"conveyor data publish {DATA_FILE} --pipeline {name}",
        ]
        output = ""
        for command in commands:
            output = conveyor(command, cwd=project, env=cli_env)
        correlation = re.search(r"correlation id ([0-9a-f-]{36})", output)
        assert correlation, output
        projects[template] = (name, project, uuid.UUID(correlation[1]))

    deployed = await asyncio.gather(*(deployed_model(stack, c) for _, _, c in projects.values()))
    for (template, (name, project, _)), (_, model) in zip(projects.items(), deployed, strict=True):
        # The README's own prediction command, as a newcomer would paste it.
        readme = (project / "README.md").read_text()
        (predict,) = [line for line in readme.splitlines() if line.startswith("conveyor predict ")]
        answer = json.loads(
            conveyor(predict.replace("conveyor ", "conveyor --json ", 1), cwd=project, env=cli_env)
        )
        row = json.loads(shlex.split(predict)[-1])
        expected = model.predict(pd.DataFrame([row]))[0]
        prediction = answer["predictions"][0]["prediction"]
        if template == "classification":
            assert prediction == expected and prediction in (0, 1)
            assert answer["predictions"][0]["probabilities"].keys() == {"0", "1"}
        else:
            assert prediction == pytest.approx(float(expected), rel=1e-9)
        assert answer["pipeline"] == name and answer["version"] == 1
