"""A quiet first start: one progress line per step, the tool's output in a log named on failure."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import pytest

from infra import process, steps

ROOT = Path(__file__).resolve().parents[2]
# What `go install -v` does to a terminal: one line per package, thousands of them.
NOISY = "for i in $(seq 1 2000); do echo github.com/minio/minio/internal/pkg$i; done"


def test_a_noisy_step_prints_one_line_with_its_duration_and_logs_everything(tmp_path: Path) -> None:
    out, log = io.StringIO(), tmp_path / "logs" / "build.log"
    steps.run_logged(["sh", "-c", NOISY], title="MinIO build", log=log, out=out)
    (line,) = out.getvalue().splitlines()
    assert line.startswith("MinIO build ....") and line.endswith("s")
    assert len(log.read_text().splitlines()) == 2001  # the command, then every line it printed


def test_a_failed_step_names_its_log_and_shows_its_last_lines(tmp_path: Path) -> None:
    out, log = io.StringIO(), tmp_path / "build.log"
    with pytest.raises(steps.StepError) as failed:
        steps.run_logged(
            ["sh", "-c", f"{NOISY}; echo 'no space left' >&2; exit 3"], title="build", log=log, out=out
        )
    (line,) = out.getvalue().splitlines()
    assert " failed after " in line
    message = str(failed.value)
    assert f"full output in {log}" in message and "exit 3" in message
    assert message.splitlines()[-1] == "  | no space left"
    assert len(message.splitlines()) == 1 + steps.TAIL_LINES


def test_a_missing_tool_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(steps.StepError, match="no-such-tool-here is not installed"):
        steps.run_logged(["no-such-tool-here"], title="tool", log=tmp_path / "x.log", out=io.StringIO())


def test_durations_read_as_people_say_them() -> None:
    assert [steps.duration(s) for s in (0.04, 12.34, 59.9, 61, 187.4)] == [
        "0.0s",
        "12.3s",
        "59.9s",
        "1m01s",
        "3m07s",
    ]


def test_the_makefile_runs_it_with_the_system_python_before_any_venv(tmp_path: Path) -> None:
    # No project package, no third-party import: run the file alone, as the Makefile does.
    script = tmp_path / "steps.py"
    script.write_text((ROOT / "infra" / "steps.py").read_text())
    ok = subprocess.run(
        [
            sys.executable,
            "-I",
            str(script),
            "Python environment",
            "--log",
            str(tmp_path / "ok.log"),
            "--",
            "sh",
            "-c",
            NOISY,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and len(ok.stdout.splitlines()) == 1 and ok.stderr == ""
    bad = subprocess.run(
        [
            sys.executable,
            "-I",
            str(script),
            "Python environment",
            "--log",
            str(tmp_path / "bad.log"),
            "--",
            "sh",
            "-c",
            "echo 'No matching distribution'; exit 1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1 and "failed after" in bad.stdout
    assert f"full output in {tmp_path / 'bad.log'}" in bad.stderr and "No matching distribution" in bad.stderr


def _server(tmp_path: Path, code: str) -> process.Server:
    marker = f"conveyor-steps-test-{tmp_path.name}"
    return process.Server(
        name="sleeper",
        argv=[sys.executable, "-c", code, marker],
        address="nowhere:1",
        ports=[],
        run_dir=tmp_path / "run",
        output=tmp_path / "sleeper.log",
        ready=lambda: True,
        marker=marker,
    )


def test_a_server_start_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = _server(tmp_path, "import time; time.sleep(60)")
    try:
        pid = process.start(server, timeout=10)
        (started,) = capsys.readouterr().out.splitlines()
        assert started.startswith("sleeper on nowhere:1 ....") and started.endswith("s")
        assert process.start(server, timeout=10) == pid
        (again,) = capsys.readouterr().out.splitlines()
        assert again.endswith(f"already running (pid {pid})")
    finally:
        process.stop(server)


def test_a_server_that_dies_fails_its_line_and_names_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = _server(tmp_path, "import sys; print('bind: address in use'); sys.exit(1)")
    server = dataclasses.replace(server, ready=lambda: False)
    with pytest.raises(process.InfraError) as failed:
        process.start(server, timeout=10)
    (line,) = capsys.readouterr().out.splitlines()
    assert " failed after " in line
    assert f"last lines of {server.output}" in str(failed.value) and "bind: address in use" in str(
        failed.value
    )


def test_into_a_pipe_or_a_spinner_the_line_is_written_whole_when_the_step_ends() -> None:
    out = io.StringIO()
    with steps.step("Kafka jars", out=out):
        assert out.getvalue() == ""  # a half line would be split by the CLI's spinner
    assert out.getvalue().startswith("Kafka jars ....") and out.getvalue().count("\n") == 1
