"""Children are stopped by pid with every descendant carrying their tag; a restart sweeps leftovers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from services.deploy.processes import TAG, ProcessBook, tagged

# A parent whose child moves to a session of its own (as circus does with the workers it starts).
PARENT = [
    sys.executable,
    "-c",
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
    "time.sleep(60)",
]


async def _until_count(tag: str, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while len(found := tagged(tag, exact=True)) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return found


async def test_stopping_a_child_stops_its_descendants_in_other_sessions(tmp_path: Path) -> None:
    book = ProcessBook(tmp_path)
    child = await book.spawn("server-a", PARENT, env=os.environ, cwd=tmp_path)
    assert (tmp_path / "pids" / "server-a.pid").read_text() == str(child.pid)
    assert len(await _until_count(child.tag, 2)) == 2  # the parent and its re-sessioned child
    await book.stop(child, timeout_s=5)
    assert not child.alive and tagged(child.tag, exact=True) == []
    assert not (tmp_path / "pids" / "server-a.pid").exists()


async def test_stop_all_stops_every_child_still_recorded(tmp_path: Path) -> None:
    book = ProcessBook(tmp_path)
    for name in ("router-a", "server-b"):
        await book.spawn(name, PARENT, env=os.environ, cwd=tmp_path)
    await book.stop_all(timeout_s=5)
    assert tagged(book.tag_prefix, exact=False) == []


def test_a_restart_sweeps_what_an_earlier_run_left_and_nothing_else(tmp_path: Path) -> None:
    book = ProcessBook(tmp_path / "run")
    ours = subprocess.Popen(PARENT, env={**os.environ, TAG: f"{book.tag_prefix}server-old"})
    theirs = subprocess.Popen(PARENT, env={**os.environ, TAG: f"{tmp_path / 'other'}::server-old"})
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 10
        while len(tagged(book.tag_prefix, exact=False)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(book.sweep()) == 2
        assert ours.wait(timeout=5) != 0 and tagged(book.tag_prefix, exact=False) == []
        assert theirs.poll() is None and stranger.poll() is None
    finally:
        for process in (ours, theirs, stranger):
            process.kill()
            process.wait()
        ProcessBook(tmp_path / "other").sweep()
