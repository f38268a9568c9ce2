"""Fault matrix, the controller's own faults (docs/RELIABILITY.md): a real pytest run of
vet over a real sshd on 127.0.0.1 (plain and under xdist) is interrupted (SIGINT,
SIGTERM) or killed (SIGKILL) while its cpu stage runs a long remote command; then
`--resume RUN_ID` continues it. A second run on the same host is refused while the
first one lives.

The stage tells the test it is inside its remote command through a FIFO (the remote
command writes its pid into it), so nothing waits on time; every wait has a deadline.
Each test checks that no pytest process, worker or remote command outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.image import ImageArtifacts
from harness.leases import holder
from harness.store import Store
from tests.fixtures.lab import guest, lab_for
from tests.fixtures.serial_bridge import SerialEndpoint, start_tcp_endpoint
from tests.fixtures.sshd import SshdInfo
from tests.helpers import gone

pytestmark = pytest.mark.faults

STAGES = """\
import os
import pytest

pytestmark = pytest.mark.stage


@pytest.mark.inventory
def test_first(host):
    assert host.run("echo one", timeout=30).stdout == "one\\n"


@pytest.mark.cpu
def test_long(host):
    fifo = os.environ.get("VET_TEST_FIFO")
    if fifo:  # the run the test hurts: say where we are, then block on the host
        with open(os.environ["VET_TEST_PIDFILE"], "w") as f:
            f.write(str(os.getpid()))
        host.run(f"sh -c 'echo $$ > {fifo}; exec sleep 600'", timeout=900)
    assert host.run("echo two", timeout=30).ok


@pytest.mark.memory
def test_after(host):
    assert host.run("echo three", timeout=30).ok
"""

#: From the signal to the controller's exit: killing the remote command, the fixtures'
#: teardown and xdist's worker shutdown, on a busy 2-core machine.
STOP_BOUND_S = 30.0


@dataclass
class Blocked:
    """A vet run stopped inside its cpu stage's remote `sleep 600`."""

    proc: subprocess.Popen[str]
    remote_pid: int  # the sleep on the host
    test_pid: int  # the pytest process running the stage (the worker under xdist)


@dataclass
class Project:
    path: Path
    sshd: SshdInfo
    consoles: list[SerialEndpoint] = field(default_factory=list)

    def new_console(self) -> None:
        """A fresh console server for the next run (the test one serves one client),
        written into the inventory as an operator would."""
        workdir = self.path / f"console-{len(self.consoles)}"
        workdir.mkdir()
        endpoint = start_tcp_endpoint(workdir)
        self.consoles.append(endpoint)
        (self.path / "hosts.yml").write_text(json.dumps({"all": {"hosts": {"node01": {
            "ansible_host": self.sshd.address, "ansible_port": self.sshd.port,
            "ansible_user": "root", "ansible_ssh_private_key_file": str(self.sshd.client_key),
            "vet_ssh_host_key": self.sshd.host_key_fingerprint,
            "vet_macs": ["52:54:00:00:00:01"], "vet_console": endpoint.url,
        }}}}))

    @property
    def store_path(self) -> Path:
        return self.path / "reports" / "vet.sqlite"

    def host_dir(self, run_id: str) -> Path:
        return self.path / "reports" / "runs" / run_id / "node01"

    def argv(self, *extra: str, xdist: bool = False) -> list[str]:
        return [sys.executable, "-m", "pytest", "-p", "harness.pytest_plugin", "--inventory",
                "hosts.yml", "-p", "no:cacheprovider", "-q", "test_stages.py",
                *(["-n", "1"] if xdist else []), *extra]

    def run(self, *extra: str, xdist: bool = False) -> subprocess.CompletedProcess[str]:
        self.new_console()
        return subprocess.run(self.argv(*extra, xdist=xdist), cwd=self.path, text=True,
                              capture_output=True, timeout=300)

    @contextlib.contextmanager
    def blocked(self, run_id: str, xdist: bool) -> Iterator[Blocked]:
        """A run inside its cpu stage; killed (and everything it started) at the end."""
        fifo = self.path / f"{run_id}.fifo"
        os.mkfifo(fifo)
        pidfile = self.path / f"{run_id}.pid"
        env = dict(os.environ, VET_TEST_FIFO=str(fifo), VET_TEST_PIDFILE=str(pidfile))
        self.new_console()
        proc = subprocess.Popen(self.argv("--run-id", run_id, xdist=xdist), cwd=self.path,
                                env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        pids: list[int] = []
        try:
            remote = int(_read_line(fifo, proc, time.monotonic() + 300))
            test_pid = int(pidfile.read_text())
            pids += [remote, test_pid]
            yield Blocked(proc, remote, test_pid)
        finally:
            for pid in [proc.pid, *pids]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.communicate(timeout=60)
            for pid in pids:
                assert gone(pid, 10), f"process {pid} of run {run_id} survived the test"


def _read_line(fifo: Path, proc: subprocess.Popen[str], deadline: float) -> str:
    """The line the stage writes into the FIFO, or fail with the run's output."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    data = b""
    try:
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None:
                proc.kill()
                out, _ = proc.communicate(timeout=60)
                pytest.fail(f"the run never reached its cpu stage; got {data!r}:\n{out}")
            if select.select([fd], [], [], min(remaining, 1.0))[0]:
                data += os.read(fd, 100)
    finally:
        os.close(fd)
    return data.decode().strip()


@pytest.fixture
def project(tmp_path: Path, sshd: SshdInfo) -> Iterator[Project]:
    (tmp_path / "test_stages.py").write_text(STAGES)
    made = Project(tmp_path, sshd)
    yield made
    for endpoint in made.consoles:
        endpoint.stop()


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the test sshd runs as root")


def _events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_an_interrupted_run_stops_its_remote_command_and_keeps_its_state(
        project: Project, signum: signal.Signals, xdist: bool) -> None:
    run_id = f"stop-{signum.name}-{int(xdist)}"
    with project.blocked(run_id, xdist) as blocked:
        sent = time.monotonic()
        os.kill(blocked.proc.pid, signum)  # the controller only, as `kill` or systemd do
        out, _ = blocked.proc.communicate(timeout=STOP_BOUND_S + 30)
        took = time.monotonic() - sent
        assert blocked.proc.returncode == pytest.ExitCode.INTERRUPTED, out
        assert took < STOP_BOUND_S, f"the run took {took:.1f} s to stop"
        assert gone(blocked.remote_pid, 5), "the remote command outlived the interrupt"
        assert gone(blocked.test_pid, 5), "the stage's pytest process outlived the controller"

    with Store(project.store_path) as store:
        run = store.run(run_id)
        assert run is not None and run["status"] == "interrupted"
        assert run["controller_pid"] == blocked.proc.pid
        (host,) = store.hosts(run_id)
        assert host["state"] == "CPUStress", host  # where it was: not Failed
        assert host["reason"].startswith(f"interrupted by operator ({signum.name}) during "
                                         "stage cpu"), host["reason"]
        assert [(r["stage"], r["outcome"]) for r in store.test_results(run_id)] == [
            ("inventory", "passed")]
        assert store.leases() == [], "the interrupted run kept its lease"
    events = _events(project.host_dir(run_id) / "events.jsonl")
    assert any(e["kind"] == "interrupted" and e["stage"] == "cpu" for e in events)
    assert events[-1]["kind"] == "host-closed"  # the fixture's teardown ran

    again = project.run("--resume", run_id, xdist=xdist)
    assert again.returncode == 0, again.stdout + again.stderr
    with Store(project.store_path) as store:
        assert [(r["stage"], r["outcome"]) for r in store.test_results(run_id)] == [
            ("inventory", "passed"), ("cpu", "passed"), ("memory", "passed")]
        run = store.run(run_id)
        assert run is not None and run["status"] == "passed" and run["resumes"] == 1
        assert store.hosts(run_id)[0]["state"] == "Completed"


@pytest.mark.parametrize("xdist", [False, True], ids=["plain", "xdist"])
def test_a_killed_controller_is_resumed_after_its_last_completed_stage(
        project: Project, xdist: bool) -> None:
    run_id = f"killed-{int(xdist)}"
    with project.blocked(run_id, xdist) as blocked:
        if not xdist:  # while it lives, a resume of it is refused (once is enough)
            early = project.run("--resume", run_id)
            assert early.returncode == pytest.ExitCode.USAGE_ERROR, early.stdout + early.stderr
            assert f"--resume {run_id}: the run is still running" in early.stderr, early.stderr
            assert f"pid {blocked.proc.pid}" in early.stderr, early.stderr

        blocked.proc.kill()
        blocked.proc.communicate(timeout=60)
        if xdist:  # the worker notices its controller is gone (execnet) and ends
            assert gone(blocked.test_pid, STOP_BOUND_S), "the worker outlived its controller"
        else:
            assert not gone(blocked.remote_pid, 0.5), "nothing was left to resume"
        host_dir = project.host_dir(run_id)
        events_before = (host_dir / "events.jsonl").read_bytes()
        console_before = (host_dir / "console.log").read_bytes()

        with Store(project.store_path) as store:
            run = store.run(run_id)
            assert run is not None and run["status"] == "running"  # stale: pid is dead
            assert store.hosts(run_id)[0]["state"] == "CPUStress"

        started = time.monotonic()
        resumed = project.run("--resume", run_id, "-v", xdist=xdist)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert time.monotonic() - started < 120
        assert gone(blocked.remote_pid, 5), "the dead controller's remote command still runs"

    assert "2 passed" in resumed.stdout, resumed.stdout  # inventory was not run again
    with Store(project.store_path) as store:
        assert [(r["stage"], r["outcome"]) for r in store.test_results(run_id)] == [
            ("inventory", "passed"), ("cpu", "passed"), ("memory", "passed")]
        run = store.run(run_id)
        assert run is not None and run["status"] == "passed" and run["resumes"] == 1
        assert run["controller_pid"] != blocked.proc.pid
        (host,) = store.hosts(run_id)
        assert host["state"] == "Completed"
        moves = [(t["from_state"], t["to_state"]) for t in store.transitions(run_id, "node01")]
        assert moves == [("Registered", "Queued"), ("Queued", "InventoryCheck"),
                         ("InventoryCheck", "CPUStress"), ("CPUStress", "Memory"),
                         ("Memory", "Reporting"), ("Reporting", "Completed")], moves
        resumed_events = store.query("SELECT payload_json FROM events WHERE run_id = ? AND "
                                     "kind = 'resumed'", (run_id,))
        payload = json.loads(resumed_events[0]["payload_json"])
        assert payload["previous_pid"] == blocked.proc.pid
        assert payload["hosts"]["node01"]["rerun"] == "cpu"
    host_dir = project.host_dir(run_id)
    assert (host_dir / "events.jsonl").read_bytes().startswith(events_before)
    assert console_before and (host_dir / "console.log").read_bytes().startswith(console_before)
    events = _events(host_dir / "events.jsonl")
    reaped = [e for e in events if e["kind"] == "resume-reaped"]
    if not xdist:
        assert reaped and reaped[0]["process_groups"], reaped


def test_a_second_run_on_a_busy_host_is_refused_naming_the_first(project: Project) -> None:
    with project.blocked("first", xdist=False) as blocked:
        started = time.monotonic()
        second = project.run("--run-id", "second", xdist=True)
        assert time.monotonic() - started < 120
        assert second.returncode == pytest.ExitCode.USAGE_ERROR, second.stdout + second.stderr
        assert (f"host node01 is busy in run first of {holder()} (pid {blocked.proc.pid}) "
                "since " in second.stderr), second.stderr
        assert "--hosts '...:!node01'" in second.stderr, second.stderr
        with Store(project.store_path) as store:
            assert store.run("second") is None, "the refused run touched the store"
            assert [lease["run_id"] for lease in store.leases()] == ["first"]
        assert not (project.path / "reports" / "runs" / "second" / "node01").exists()
        assert not gone(blocked.remote_pid, 0.2), "the refused run hurt the first one"


def test_resume_of_an_unknown_run_names_the_known_ones(project: Project) -> None:
    done = project.run("--run-id", "known")
    assert done.returncode == 0, done.stdout + done.stderr
    refused = project.run("--resume", "nope")
    assert refused.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--resume nope: no such run in the store" in refused.stderr, refused.stderr
    assert "recent runs: known" in refused.stderr, refused.stderr
    finished = project.run("--resume", "known")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "3 deselected" in finished.stdout, finished.stdout


LAB_STAGES = """\
import os
import pytest

pytestmark = pytest.mark.stage


@pytest.mark.inventory
def test_first(host):
    assert host.run("echo one", timeout=60).stdout == "one\\n"


@pytest.mark.cpu
def test_long(host):
    fifo = os.environ.get("VET_TEST_FIFO")
    if fifo:  # the run the test kills: say where we are, then block on the guest
        with open(fifo, "w") as f:
            f.write(f"{os.getpid()}\\n")
        host.run("sleep 600", timeout=900)
    assert host.run("echo two", timeout=60).ok
"""


@pytest.mark.lab
def test_a_resumed_run_boots_its_netbooted_host_again(live_image: ImageArtifacts,
                                                      tmp_path: Path) -> None:
    """The guest the killed controller left up is power-cycled and booted again for the
    resumed run (same run, same controller key, a token it verifies), then continues at
    the cut stage."""
    (tmp_path / "test_stages.py").write_text(LAB_STAGES)
    reports = tmp_path / "reports"
    fifo = tmp_path / "stage.fifo"
    os.mkfifo(fifo)
    with lab_for([guest("vm-resume", 17)], live_image) as lab:
        argv = [sys.executable, "-m", "pytest", "-p", "harness.pytest_plugin", "--inventory",
                str(lab.inventory), "--profile", "quick", "--reports-dir", str(reports),
                "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "test_stages.py"]
        proc = subprocess.Popen([*argv, "--run-id", "lab-killed"], cwd=tmp_path,
                                env=dict(lab.env, VET_TEST_FIFO=str(fifo)), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            test_pid = int(_read_line(fifo, proc, time.monotonic() + 900))
            proc.kill()
            proc.communicate(timeout=60)
            assert gone(test_pid, 10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=60)
        host_dir = reports / "runs" / "lab-killed" / "vm-resume"
        console_before = (host_dir / "console.log").read_bytes()
        resumed = subprocess.run([*argv, "--resume", "lab-killed"], cwd=tmp_path, env=lab.env,
                                 text=True, capture_output=True, timeout=1500)
        assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-2000:]

    with Store(reports / "vet.sqlite") as store:
        assert [(r["stage"], r["outcome"]) for r in store.test_results("lab-killed")] == [
            ("inventory", "passed"), ("cpu", "passed")]
        assert store.hosts("lab-killed")[0]["state"] == "Completed"
        run = store.run("lab-killed")
        assert run is not None and run["status"] == "passed" and run["resumes"] == 1
    events = _events(host_dir / "events.jsonl")
    kinds = [e["kind"] for e in events]
    assert kinds.count("booted") == 2 and "resume-boot" in kinds, kinds
    cycled = [e for e in events if e["kind"] == "power-on"]
    assert [e["cycled"] for e in cycled] == [False, True], cycled
    assert (host_dir / "console.log").read_bytes().startswith(console_before)
