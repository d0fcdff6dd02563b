"""The ``conveyor`` command through its real entry point, against the real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.integration.processes import free_port

pytestmark = pytest.mark.infra

CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONVEYOR, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def assert_user_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "spec.yaml"
    path.write_text(f"name: {name}\ntarget: target\ntask: classification\napproval: auto\n")
    return path


def test_pipeline_apply_is_idempotent_and_show_lists_it(settings: Settings, spec_file: Path) -> None:
    first = run("--json", "pipeline", "apply", str(spec_file))
    assert first.returncode == 0, first.stderr
    applied = json.loads(first.stdout)
    assert applied["created"] is True and applied["version"].startswith("spec-")

    again = run("pipeline", "apply", str(spec_file))
    assert again.returncode == 0 and "unchanged" in again.stdout

    shown = run("--json", "pipeline", "show", applied["name"])
    assert json.loads(shown.stdout)["version"] == applied["version"]
    listed = json.loads(run("--json", "pipeline", "list").stdout)
    assert applied["name"] in [p["name"] for p in listed]


def test_invalid_specs_give_one_line_errors(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntask: classification\nestimator: {path: os.system}\n")
    result = run("pipeline", "apply", str(bad))
    assert_user_error(result, "is not a valid pipeline spec")
    assert "target" in result.stderr and "os.system" in result.stderr

    assert_user_error(run("pipeline", "apply", str(tmp_path / "missing.yaml")), "no such file")
    not_yaml = tmp_path / "tabs.yaml"
    not_yaml.write_text("name: [unclosed\n")
    assert_user_error(run("pipeline", "apply", str(not_yaml)), "not valid YAML")


def test_unknown_pipeline_and_bad_files_are_refused(
    settings: Settings, tmp_path: Path, spec_file: Path
) -> None:
    assert_user_error(run("pipeline", "show", "no-such-pipeline"), "no pipeline named 'no-such-pipeline'")
    data = tmp_path / "data.csv"
    data.write_text("a,target\n1,0\n")
    assert_user_error(
        run("data", "publish", str(data), "--pipeline", "no-such-pipeline"), "no pipeline named"
    )
    text = tmp_path / "data.txt"
    text.write_text("hello")
    assert_user_error(run("data", "publish", str(text), "--pipeline", "x"), ".csv and .parquet")
    assert_user_error(run("data", "publish", str(tmp_path / "nope.csv"), "--pipeline", "x"), "no such file")


def test_data_publish_reports_the_arrival(settings: Settings, tmp_path: Path, spec_file: Path) -> None:
    name = json.loads(run("--json", "pipeline", "apply", str(spec_file)).stdout)["name"]
    data = tmp_path / "data.csv"
    data.write_text("a,target\n1,0\n2,1\n")
    result = run("--json", "data", "publish", str(data), "--pipeline", name)
    assert result.returncode == 0, result.stderr
    size = data.stat().st_size
    assert (
        "uploading data.csv" in result.stderr and f"{size}/{size} bytes" in result.stderr
    )  # the progress bar
    event = json.loads(result.stdout)
    assert event["pipeline"] == name and event["uri"].startswith(f"s3://{settings.landing_bucket}/{name}/")

    tail = run(
        "--json", "events", "tail", "--topic", "conveyor.data.arrived", "--from-beginning", "--limit", "1"
    )
    assert tail.returncode == 0, tail.stderr
    assert json.loads(tail.stdout.splitlines()[0])["topic"] == "conveyor.data.arrived"


def test_registry_mistakes_and_absence_are_reported(settings: Settings) -> None:
    nowhere = {"CONVEYOR_REGISTRY_PORT": str(free_port())}
    assert_user_error(run("models", "list", env=nowhere), "registry unreachable")
    assert_user_error(run("events", "tail", "--topic", "conveyor.nope"), "unknown topic")
    usage = run("models", "show", "churn", "not-a-number")
    assert usage.returncode == 2 and "not a valid integer" in usage.stderr


def test_serving_commands_report_mistakes_and_absence(settings: Settings, tmp_path: Path) -> None:
    nowhere = {"CONVEYOR_DEPLOY_PORT": str(free_port())}
    assert_user_error(run("deployments", env=nowhere), "deploy service unreachable")
    assert_user_error(run("predict", "churn", env=nowhere), "give rows with --row or a --file")
    assert_user_error(run("predict", "churn", "--row", "not json", env=nowhere), "--row is not JSON")
    assert_user_error(run("predict", "churn", "--row", '{"a": 1}', env=nowhere), "deploy service unreachable")
    assert_user_error(run("batch", "churn", str(tmp_path / "none.csv")), "no such file")


def test_docs_writes_the_event_contracts_page(tmp_path: Path) -> None:
    page = tmp_path / "events.html"
    result = run("docs", "--html", str(page), env={"BENTOML_DO_NOT_TRACK": "True"}, timeout=120)
    assert result.returncode == 0, result.stderr
    html = page.read_text()
    assert "Conveyor events" in html and "conveyor.model.approved" in html


def test_commands_that_go_to_kafka_directly_check_the_operator_role(tmp_path: Path) -> None:
    tokens = '{"reader-t": {"user": "rita", "role": "reader"}}'
    data = tmp_path / "rows.csv"
    data.write_text("a\n1\n")
    unknown = run("dlq", "replay", "conveyor.data.arrived", env={"CONVEYOR_API_TOKEN": "guess"}, timeout=120)
    assert_user_error(unknown, "unknown token to replay dead letters")
    env = {"CONVEYOR_API_TOKENS": tokens, "CONVEYOR_API_TOKEN": "reader-t"}
    reader = run("batch", "churn", str(data), env=env, timeout=120)
    assert_user_error(reader, "user 'rita' (role 'reader') lacks the 'operator' role")
    assert "reader-t" not in reader.stderr + reader.stdout  # the token itself is never printed
