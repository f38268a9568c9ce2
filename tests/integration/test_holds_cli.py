"""`vet holds`, `vet release`, `vet janitor` as real processes on a seeded run store.

The held host's PXE server is gone (as after `vet lab down`): `vet release` runs the
real release.yml, which fails, and says how to close the hold; `--forget` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness.hold import new_hold_key
from harness.leases import operator
from harness.states import State
from harness.store import Store

ROOT = Path(__file__).resolve().parents[2]

INVENTORY = """\
all:
  hosts:
    n1:
      ansible_host: 10.77.250.11
      vet_macs: ["52:54:00:77:fa:0b"]
      vet_power: {{driver: manual}}
      vet_pxe: {{server: 10.77.250.1, interface: vtgone0, dhcp_range: "10.77.250.100,10.77.250.200",
                root: "{root}", mode: lab, token_key_file: "{root}/token.key"}}
"""


def vet(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "--reports-dir",
                           str(tmp_path / "reports"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300,
                          env=dict(os.environ, VET_HOLD_DIR=str(tmp_path / "holds")))


def _seed(tmp_path: Path, expires_in_s: float) -> Path:
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "hosts.yml").write_text(INVENTORY.format(root=tmp_path / "pxe-gone"))
    key = new_hold_key("r1", "n1", tmp_path / "holds")
    now = time.time()
    with Store(tmp_path / "reports" / "vet.sqlite") as store:
        store.start_run("r1", "quick", str(tmp_path / "inv"))
        store.transition("r1", "n1", State.QUEUED)
        store.transition("r1", "n1", State.FAILED, "storage: fio reported I/O errors")
        store.transition("r1", "n1", State.HOLDING)
        store.add_hold("r1", "n1", stage="storage", reason="fio reported I/O errors\nmore",
                       opened_at=now - 60, expires_at=now + expires_in_s,
                       key_path=str(key.private), public_key=key.public_line,
                       ssh_command=f"ssh -i {key.private} root@10.77.250.11",
                       ip="10.77.250.11", ssh_port=22, ssh_user="root", power_off=1,
                       opened_by="alice@ctl", key_via="ssh")
    return key.private


def test_holds_lists_and_forget_closes_a_hold_whose_host_is_gone(tmp_path: Path) -> None:
    key = _seed(tmp_path, 3600)
    listed = vet(tmp_path, "holds")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].startswith("n1: failed stage storage in run r1; "
                                                    "held since ")
    assert "  why:    fio reported I/O errors\n" in listed.stdout
    assert f"  get in: ssh -i {key} root@10.77.250.11" in listed.stdout
    [view] = json.loads(vet(tmp_path, "holds", "--json").stdout)
    assert view["expired"] is False and view["held_by"] == "alice@ctl"

    failed = vet(tmp_path, "release", "n1")
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr
    assert "release.yml failed" in failed.stderr and "vet release n1 --forget" in failed.stderr
    assert key.exists()

    forgot = vet(tmp_path, "release", "n1", "--forget")
    assert forgot.returncode == 0, forgot.stderr
    assert "released n1: forgotten: nothing done to the host" in forgot.stdout
    assert not key.exists() and not (tmp_path / "holds" / "r1").exists()
    assert vet(tmp_path, "holds").stdout.strip() == "no host is held"
    with Store(tmp_path / "reports" / "vet.sqlite") as store:
        [row] = store.query("SELECT released_by FROM holds")
        assert row["released_by"] == operator()
        assert store.host_state("r1", "n1") is State.RELEASED

    nothing = vet(tmp_path, "release", "n1")
    assert nothing.returncode == 2 and "n1 is not held" in nothing.stderr


def test_janitor_reports_an_expired_hold_it_cannot_release(tmp_path: Path) -> None:
    key = _seed(tmp_path, -60)
    old = tmp_path / "reports" / "runs" / "r0" / "n9" / "console.log"
    old.parent.mkdir(parents=True)
    old.write_text("boot\n")
    os.utime(old, (time.time() - 40 * 86400,) * 2)

    dry = vet(tmp_path, "janitor", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would release n1 (held since" in dry.stdout
    assert f"would delete {old}" in dry.stdout and old.exists()

    swept = vet(tmp_path, "janitor", "--console-days", "30")
    assert swept.returncode == 1, swept.stdout + swept.stderr
    assert "could not release n1: " in swept.stdout and "--forget" in swept.stdout
    assert "deleted 1 console log(s)" in swept.stdout and not old.exists()
    assert key.exists(), "an unreleased hold lost its key"

    bad = vet(tmp_path, "janitor", "--artifact-days", "-1")
    assert bad.returncode == 2 and "--artifact-days -1 is negative" in bad.stderr
