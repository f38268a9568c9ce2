"""What a vet run's pytest processes import (issue 8: memory per host with one xdist worker
per host). The xdist controller never opens a channel and a worker only the transport its
host uses, so neither carries paramiko (~13 MB with cryptography and PyNaCl; invoke, which
paramiko would load, is hidden from it) without an SSH host; Ansible's inventory loader
runs in a child interpreter (harness.inventory_process), never in the controller or a
worker; mqtt (paho), plots (matplotlib) and notify (apprise) load only where used; the
repository's pytest config keeps labgrid's plugin (gRPC, protobuf, rich: ~25 MB) out of
every process. Checked on sys.modules of real processes, not on RSS: what is imported is
what can regress."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.errors import InventoryError
from harness.inventory import load_inventory
from harness.inventory_process import load_inventory_apart

REPO = Path(__file__).resolve().parents[2]

#: Never imported by a run's processes unless a host's configuration asks for them.
HEAVY = ("paramiko", "invoke", "nacl", "paho", "matplotlib", "apprise", "labgrid", "grpc")

PROBE = f"""\
import json, sys

HEAVY = {HEAVY!r}


def loaded():
    return sorted(m for m in HEAVY if m in sys.modules)


def pytest_sessionfinish(session):
    # Not PYTEST_XDIST_WORKER: an outer xdist run (this suite's) hands it down.
    worker = getattr(session.config, "workerinput", None)
    who = worker["workerid"] if worker else "controller"
    with open(f"modules-{{who}}.json", "w") as out:
        json.dump({{"heavy": loaded(),
                   "ansible_loader": "ansible.inventory.manager" in sys.modules}}, out)
"""

STAGES = """\
import pytest

pytestmark = pytest.mark.stage


@pytest.mark.inventory
def test_runs(host):
    assert host.run("true", timeout=60).ok
"""


def _python_json(code: str) -> Any:
    """What `code` printed as JSON, run in a fresh interpreter (nothing imported yet)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_importing_the_plugin_loads_no_transport_or_controller_extras() -> None:
    code = ("import json, sys\n"
            "import harness.pytest_plugin, harness.smart_snapshot, harness.live_progress\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} + ('ansible',) "
            "if m in sys.modules)))\n")
    assert _python_json(code) == []


def test_the_ssh_transport_loads_paramiko_without_invoke() -> None:
    """invoke serves only ssh_config's `Match exec`, which vet never reads (~6 MB and
    ~0.1 s per worker); it is hidden while paramiko loads, and importable after."""
    code = ("import json, sys\n"
            "import harness.console.ssh\n"
            "loaded = {m: m in sys.modules for m in ('paramiko', 'invoke')}\n"
            "import invoke\n"
            "print(json.dumps(dict(loaded, later=bool(invoke.run))))\n")
    assert _python_json(code) == {"paramiko": True, "invoke": False, "later": True}


def test_transports_still_resolve_from_the_package() -> None:
    import harness.console
    from harness.console.ssh import SshChannel

    assert harness.console.SshChannel is SshChannel
    assert "SshChannel" in harness.console.__all__


PLOTTING_STAGE = """\

@pytest.mark.cpu
def test_plots(host):
    from harness.probes.thermal import parse_thermal

    host.record("temperatures", parse_thermal(
        "1790000000|thermal:x86_pkg_temp|41000\\n1790000005|thermal:x86_pkg_temp|45000\\n"))
"""


def _run(tmp_path: Path, stages: str) -> tuple[dict[str, object], dict[str, object]]:
    """A real `pytest -n 1` run with the repository's config over one local host: what
    the controller and the worker had imported at the end."""
    (tmp_path / "hosts.yml").write_text(json.dumps(
        {"all": {"hosts": {"node01": {"ansible_connection": "local"}}}}))
    (tmp_path / "test_stages.py").write_text(stages)
    (tmp_path / "vet_probe.py").write_text(PROBE)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--rootdir",
         str(tmp_path), "-p", "harness.pytest_plugin", "-p", "vet_probe", "--inventory",
         "hosts.yml", "-p", "no:cacheprovider", "-q", "test_stages.py", "-n", "1",
         "--run-id", "imports"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return (json.loads((tmp_path / "modules-controller.json").read_text()),
            json.loads((tmp_path / "modules-gw0.json").read_text()))


def test_run_processes_import_only_what_their_hosts_use(tmp_path: Path) -> None:
    controller, worker = _run(tmp_path, STAGES)
    assert controller == {"heavy": [], "ansible_loader": False}
    assert worker == {"heavy": [], "ansible_loader": False}


def test_plots_are_drawn_by_the_runs_plot_server_not_by_a_worker(tmp_path: Path) -> None:
    """harness.plot_server: one process draws every plot of the run (matplotlib ~37 MB
    each), warmed up while the hosts boot; the plot still lands in the stage's evidence."""
    controller, worker = _run(tmp_path, "import sys\n" + STAGES + PLOTTING_STAGE)
    assert controller == {"heavy": [], "ansible_loader": False}
    assert worker == {"heavy": [], "ansible_loader": False}
    [png] = (tmp_path / "reports" / "runs" / "imports" / "node01" / "cpu").glob("*.png")
    assert png.name.endswith("-temperatures_over_time.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_the_child_loads_what_load_inventory_loads() -> None:
    example = REPO / "inventory" / "example"
    password = REPO / "inventory" / "example.vault-pass"
    assert load_inventory_apart(example, "node0*", password) \
        == load_inventory(example, "node0*", password)
    rack = REPO / "tests/data/inventories/rack_yaml/hosts.yml"
    assert load_inventory_apart(rack) == load_inventory(rack)


def test_the_childs_inventory_error_is_the_operators_message(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    node01: {vet_macs: nonsense}\n")
    with pytest.raises(InventoryError) as direct:
        load_inventory(tmp_path / "hosts.yml")
    with pytest.raises(InventoryError) as apart:
        load_inventory_apart(tmp_path / "hosts.yml")
    assert str(apart.value) == str(direct.value)
    assert "node01" in str(apart.value)

