"""xdist workers take the hosts the controller parsed (harness.pytest_plugin
hosts_for_workers) instead of loading the inventory again: a real `pytest -n 2` vet run
over two hosts on the test sshd, whose stages report from inside each worker."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from harness.inventory import load_inventory
from harness.pytest_plugin import hosts_for_workers, hosts_from_controller
from harness.store import Store
from tests.fixtures.sshd import SshdInfo

STAGES = """\
import json, os, sys
import pytest

pytestmark = pytest.mark.stage


@pytest.mark.inventory
def test_where(host):
    assert host.run("true", timeout=60).ok
    seen = {"worker": os.environ.get("PYTEST_XDIST_WORKER"), "host": host.name,
            "ansible_loaded": "ansible.inventory.manager" in sys.modules,
            "spec_user": host.entry.connection.user}
    with open(f"seen-{host.name}.json", "w") as out:
        json.dump(seen, out)
"""

REPO = Path(__file__).resolve().parents[2]


def _inventory(sshd: SshdInfo) -> dict[str, object]:
    hosts = {
        name: {"ansible_host": sshd.address, "ansible_port": sshd.port, "ansible_user": "root",
               "ansible_ssh_private_key_file": str(sshd.client_key),
               "vet_ssh_host_key": sshd.host_key_fingerprint, "vet_macs": [mac]}
        for name, mac in (("node01", "52:54:00:00:00:01"), ("node02", "52:54:00:00:00:02"))
    }
    return {"all": {"hosts": hosts}}


def test_hosts_cross_to_workers_unchanged() -> None:
    hosts = load_inventory(REPO / "tests/data/inventories/rack_yaml/hosts.yml")
    wire = hosts_for_workers(hosts)
    assert wire.isascii()
    assert hosts_from_controller(wire) == hosts
    assert pickle.loads(pickle.dumps(hosts)) == hosts


def test_workers_use_the_controllers_hosts(tmp_path: Path, sshd: SshdInfo) -> None:
    (tmp_path / "hosts.yml").write_text(json.dumps(_inventory(sshd)))
    (tmp_path / "test_stages.py").write_text(STAGES)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "harness.pytest_plugin", "--inventory",
         "hosts.yml", "-p", "no:cacheprovider", "-q", "test_stages.py", "-n", "2",
         "--run-id", "wire"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = [json.loads((tmp_path / f"seen-{name}.json").read_text())
            for name in ("node01", "node02")]
    assert all(s["worker"] in ("gw0", "gw1") for s in seen)  # inside the workers
    assert [s["spec_user"] for s in seen] == ["root", "root"]  # the parsed inventory
    assert not any(s["ansible_loaded"] for s in seen), "a worker loaded the inventory again"
    with Store(tmp_path / "reports" / "vet.sqlite") as store:
        outcomes = {(r["host"], r["outcome"]) for r in store.test_results("wire")}
    assert outcomes == {("node01", "passed"), ("node02", "passed")}


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the test sshd runs as root")
