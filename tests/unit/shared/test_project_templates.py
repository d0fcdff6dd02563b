"""``conveyor init`` and ``conveyor pipeline check``: what a template writes, and what check refuses."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from shared.cli.main import cli
from shared.pipeline_spec import PipelineSpec, resolve_features
from shared.project_templates import DATA_FILE, SPEC_FILE, TEMPLATES, WORKFLOW_FILE, render


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_a_template_is_a_valid_spec_over_its_own_sample_data(template: str) -> None:
    files = render("churn-model", template)
    assert set(files) == {SPEC_FILE, DATA_FILE, "README.md", WORKFLOW_FILE}
    spec = PipelineSpec.from_yaml(files[SPEC_FILE].decode())
    assert spec.name == "churn-model" and spec.task == template and spec.approval == "auto"
    assert spec.features.derived, "a template shows derived columns"
    frame = pd.read_csv(io.BytesIO(files[DATA_FILE]))
    assert len(frame) >= spec.validation.min_rows and spec.target in frame.columns
    features = resolve_features(spec, frame)
    assert set(features.columns) | {spec.target} == set(frame.columns)
    # The README's example row carries exactly the columns a request needs.
    (predict,) = [
        line for line in files["README.md"].decode().splitlines() if line.startswith("conveyor predict")
    ]
    row = json.loads(predict.split("--row ", 1)[1].strip("'"))
    assert set(row) == set(features.columns)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_the_workflow_checks_on_pull_requests_and_publishes_on_merge(template: str) -> None:
    workflow = yaml.safe_load(render("p", template)[WORKFLOW_FILE])
    on = workflow[True]  # YAML 1.1 reads the key `on` as a boolean, as GitHub's own parser does not
    assert "pull_request" in on and on["push"] == {"branches": ["main"]}
    check, publish = workflow["jobs"]["check"], workflow["jobs"]["publish"]
    assert [s["run"] for s in check["steps"] if "run" in s][-1] == f"conveyor pipeline check {SPEC_FILE}"
    assert publish["needs"] == "check" and publish["if"] == "github.event_name == 'push'"
    assert [s["run"] for s in publish["steps"] if "run" in s][-2:] == [
        f"conveyor pipeline apply {SPEC_FILE}",
        f"conveyor data publish {DATA_FILE} --pipeline p",
    ]


def test_init_writes_a_project_that_check_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["init", "fraud", "--template", "classification"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fraud" / WORKFLOW_FILE).is_file()
    monkeypatch.chdir(tmp_path / "fraud")
    checked = runner.invoke(cli, ["--json", "pipeline", "check", SPEC_FILE])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)["valid"] is True and json.loads(checked.output)["name"] == "fraud"


def test_init_never_overwrites_and_refuses_a_bad_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    runner = CliRunner()
    taken = runner.invoke(cli, ["init", "taken", "--template", "regression"])
    assert taken.exit_code == 1 and "already exists" in taken.output
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
    bad = runner.invoke(cli, ["init", "../Up", "--template", "regression"])
    assert bad.exit_code == 1 and "is not a pipeline name" in bad.output
    assert not (tmp_path.parent / "Up").exists()
    unknown = runner.invoke(cli, ["init", "x", "--template", "clustering"])
    assert unknown.exit_code == 2 and "clustering" in unknown.output


def test_check_refuses_a_bad_expression_with_its_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["init", "bad", "--template", "regression"]).exit_code == 0
    spec = tmp_path / "bad" / SPEC_FILE
    spec.write_text(spec.read_text().replace("bp / clip(age / 10, 1, 10)", "bp / clip(agee / 10, 1, 10)"))
    result = runner.invoke(cli, ["pipeline", "check", str(spec)])
    assert result.exit_code == 1
    assert "features.derived.1 (pressure_per_decade): unknown column 'agee'" in result.output
    assert "(at column 11)" in result.output
    missing = runner.invoke(cli, ["pipeline", "check", "nope.yaml"])
    assert missing.exit_code == 1 and "no such file" in missing.output
