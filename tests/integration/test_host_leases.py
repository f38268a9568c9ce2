"""Busy-host refusal with real pytest runs sharing one run store: a second run on a host
that a live run vets is refused with who and since when; once that run ends, or its
controller dies (SIGKILL), the host is free again. The first run is held inside its
stage by a socket the test controls, so nothing waits on time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.leases import holder
from harness.store import Store

INVENTORY = """\
all:
  hosts:
    node01: {ansible_connection: local}
"""

STAGE = """\
import os, socket
import pytest

pytestmark = [pytest.mark.stage, pytest.mark.inventory]


def test_inventory(host):
    port = os.environ.get("VET_GATE_PORT")
    if port:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as gate:
            gate.settimeout(120)
            assert gate.recv(1) == b"g"
"""


def _argv(run_id: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "harness.pytest_plugin", "--inventory",
            "hosts.yml", "--run-id", run_id, "-m", "stage", "-p", "no:cacheprovider", "-q",
            "test_stage.py"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    (tmp_path / "test_stage.py").write_text(STAGE)
    return tmp_path


@contextmanager
def run_in_stage(project: Path, run_id: str) -> Iterator[tuple[subprocess.Popen[str],
                                                               socket.socket]]:
    """A run whose stage test is connected to us and waits for our go."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(120)
        env = dict(os.environ, VET_GATE_PORT=str(listener.getsockname()[1]))
        proc = subprocess.Popen(_argv(run_id), cwd=project, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            gate, _ = listener.accept()  # the run is inside its stage now
            with gate:
                yield proc, gate
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=60)


def _plain(project: Path, run_id: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VET_GATE_PORT"}
    return subprocess.run(_argv(run_id), cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_busy_host_is_refused_until_its_run_ends(project: Path) -> None:
    with run_in_stage(project, "first") as (proc, gate):
        second = _plain(project, "second")
        assert second.returncode == 4, second.stdout + second.stderr
        text = second.stdout + second.stderr
        assert f"host node01 is busy in run first of {holder()} (pid {proc.pid}) since" in text
        gate.sendall(b"g")
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
    with Store(project / "reports" / "vet.sqlite") as store:
        assert store.leases() == [], "the finished run kept its lease"
        assert store.run("second") is None, "the refused run touched the store's runs"
    third = _plain(project, "third")
    assert third.returncode == 0, third.stdout + third.stderr


def test_a_dead_controllers_lease_is_taken_over(project: Path) -> None:
    with run_in_stage(project, "crashed") as (proc, _gate):
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    with Store(project / "reports" / "vet.sqlite") as store:
        assert [lease["run_id"] for lease in store.leases()] == ["crashed"]
    after = _plain(project, "after")
    assert after.returncode == 0, after.stdout + after.stderr
    with Store(project / "reports" / "vet.sqlite") as store:
        assert store.leases() == []
