"""`vet status` and `vet logs` as processes, on a run written by the harness's own Store and
EventLog: JSON and plain output, source filtering, an unknown host, and following (-f,
--watch) while another thread appends, ending by themselves when the run finishes.
Every wait has a deadline: lines are read with select, processes waited on with a timeout."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from harness.states import State
from harness.store import Store
from tests.fixtures.live_run import RUN_ID, LiveRun, make_live_run

ROOT = Path(__file__).resolve().parents[2]


def _argv(run: LiveRun, *args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "--reports-dir", str(run.reports), *args]


def vet(run: LiveRun, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_argv(run, *args), cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def run(tmp_path: Path) -> LiveRun:
    return make_live_run(tmp_path / "reports")


class Follower:
    """A vet process whose output is read line by line with a deadline."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.seen: list[str] = []
        self._pending = b""

    def until(self, text: str, within: float = 60.0) -> str:
        """Read lines until one contains `text`; fail after `within` seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + within
        while True:
            *lines, self._pending = self._pending.split(b"\n")
            for number, raw in enumerate(lines):
                line = raw.decode()
                self.seen.append(line)
                if text in line:
                    self._pending = b"\n".join([*lines[number + 1:], self._pending])
                    return line
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"no line with {text!r} within {within} s: {self.seen}")
            data = os.read(fd, 65536)
            if not data:
                raise AssertionError(f"exited before {text!r}: {self.seen}")
            self._pending += data

    def finish(self, within: float = 60.0) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=within)
        return self.proc.returncode, (self._pending + out).decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


@pytest.fixture
def followers() -> Iterator[list[Follower]]:
    started: list[Follower] = []
    yield started
    for follower in started:
        follower.kill()


def test_status_json_is_one_document(run: LiveRun) -> None:
    result = vet(run, "status", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["run"]["id"] == RUN_ID and document["run"]["finished"] is False
    hosts = {h["name"]: h for h in document["hosts"]}
    assert (hosts["node01"]["state"], hosts["node01"]["percent"]) == ("CPUStress", 42.0)
    assert hosts["node02"]["verdict"] == "FAILED smart"


def test_status_into_a_pipe_is_plain(run: LiveRun) -> None:
    result = vet(run, "status", "--run", RUN_ID)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"run {RUN_ID}  running  profile quick")
    assert lines[1].split() == ["host", "state", "stage", "progress", "elapsed", "last",
                                "event", "verdict"]
    node01 = next(line for line in lines if line.startswith("node01"))
    assert "CPUStress" in node01 and "42% 2 workers" in node01 and "ok so far" in node01
    assert "FAILED smart" in next(line for line in lines if line.startswith("node02"))


def test_status_shows_held_hosts(run: LiveRun) -> None:
    with Store(run.store_path) as store:
        store.add_hold(RUN_ID, "node02", stage="smart", reason="smart failed",
                       opened_at=time.time(), expires_at=time.time() + 3600,
                       ssh_command="ssh -i /keys/node02 root@192.0.2.12")
    lines = vet(run, "status").stdout.splitlines()
    held = lines.index("held (vet holds, vet release HOST):")
    assert lines[held + 1].startswith("  node02 held since ")
    assert lines[held + 1].endswith("(smart): ssh -i /keys/node02 root@192.0.2.12")
    [hold] = json.loads(vet(run, "status", "--json").stdout)["holds"]
    assert (hold["host"], hold["stage"]) == ("node02", "smart")


def test_logs_annotated_and_filtered_by_source(run: LiveRun) -> None:
    everything = vet(run, "logs", "node01").stdout.splitlines()
    assert len(everything) == 10
    assert any(" harness   state         Queued -> InventoryCheck" in line for line in everything)
    assert everything[-1].endswith("progress      cpu 42% 2 workers (1m00s, ~1m23s left)")
    console = vet(run, "logs", "node01", "--source", "console").stdout.splitlines()
    assert len(console) == 1
    assert console[0].endswith("console   line          [  12.5] EDAC MC0: 1 CE")
    local = vet(run, "logs", "node01", "--source", "local", "--source", "console").stdout
    assert "[stderr] stress-ng: warn: hot" in local  # its escape sequences removed
    assert "\x1b" not in local and len(local.splitlines()) == 4


def test_logs_and_status_show_a_console_batch_line_by_line(run: LiveRun) -> None:
    """The console is logged one event per read (kind "lines"); older runs have one "line"
    event per console line (the fixture's): both print one row per console line."""
    log = run.events("node01")
    log.emit_lines("console", ["[  13.0] ata1: link up", "\x1b[1mbold\x1b[0m", "[  13.2] last"],
                   time.time())
    log.close()
    console = vet(run, "logs", "node01", "--source", "console").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in console] == [
        "console   line          [  12.5] EDAC MC0: 1 CE",
        "console   line          [  13.0] ata1: link up",
        "console   line          bold",
        "console   line          [  13.2] last"]
    assert len({line.split(" ", 1)[0] for line in console[1:]}) == 1  # the read's time
    assert len(vet(run, "logs", "node01").stdout.splitlines()) == 13
    [node01] = [h for h in json.loads(vet(run, "status", "--json").stdout)["hosts"]
                if h["name"] == "node01"]
    assert node01["last_event"] == "line: [  13.2] last"


def test_logs_of_an_unknown_host_names_the_run_hosts(run: LiveRun) -> None:
    result = vet(run, "logs", "node99")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"vet: error: host 'node99' is not in run {RUN_ID}; its hosts: node01, node02, node03 "
        "(pass one of them, or --run for another run)")
    assert "Traceback" not in result.stderr
    bad = vet(run, "logs", "node01", "--source", "serial")
    assert bad.returncode == 2 and "invalid choice: 'serial'" in bad.stderr


def test_logs_follow_prints_appends_and_stops_when_the_run_ends(
        run: LiveRun, followers: list[Follower]) -> None:
    follower = Follower(_argv(run, "logs", "node03", "-f"))
    followers.append(follower)
    # node03 has no event file yet: following waits for it to appear.
    log = run.events("node03")
    log.emit("harness", "state", **{"from": "Registered", "to": "Queued"})
    follower.until("Registered -> Queued")
    log.emit("local", "line", stream="stdout", text="first appended line")
    follower.until("first appended line")
    log.emit("console", "finding", severity="critical", message="Kernel panic")
    follower.until("critical: Kernel panic")
    log.close()
    with Store(run.store_path) as store:
        store.finish_run(RUN_ID, "interrupted")
    code, out, err = follower.finish()
    assert code == 0, err
    assert out.strip().endswith(f"(run {RUN_ID} finished: interrupted)")


def test_status_watch_into_a_pipe_logs_state_changes_until_the_run_ends(
        run: LiveRun, followers: list[Follower]) -> None:
    follower = Follower(_argv(run, "status", "--watch"))
    followers.append(follower)
    follower.until("node03")  # the first table is out
    with Store(run.store_path) as store:
        store.transition(RUN_ID, "node03", State.QUEUED, "picked up")
        store.transition(RUN_ID, "node03", State.SMART, "stage smart", "smart")
        follower.until("node03 Registered -> Queued: picked up")
        follower.until("node03 Queued -> SMART: stage smart")  # each change, however quick
        store.finish_run(RUN_ID, "failed")
    code, out, err = follower.finish()
    assert code == 0, err
    assert out.strip().endswith(f"run {RUN_ID} finished: failed")
    assert "\x1b" not in out


def test_status_watch_into_a_pipe_leaves_on_sigint(
        run: LiveRun, followers: list[Follower]) -> None:
    follower = Follower(_argv(run, "status", "--watch"))
    followers.append(follower)
    follower.until("node03")  # the first table is out: the watch loop runs
    follower.proc.send_signal(signal.SIGINT)
    code, out, err = follower.finish()
    assert code == 130, err
    assert err.strip() == "vet: interrupted"
    assert "finished" not in out


def test_status_watch_on_a_tty_redraws_and_leaves_on_ctrl_c(run: LiveRun) -> None:
    argv = _argv(run, "status", "--watch")
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "150", "LINES": "30"}
    child = pexpect.spawn(argv[0], argv[1:], cwd=str(ROOT), env=env, dimensions=(30, 150),
                          timeout=60)
    try:
        child.expect_exact("42% 2 workers")
        log = run.events("node01")
        log.emit("harness", "progress", stage="cpu", percent=63.0, figure="3 workers")
        log.close()
        child.expect_exact("63% 3 workers")
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130
    assert b"Traceback" not in (child.before or b"")
