"""A failed lab guest is held, reachable with its hold key, retried and released: one
boot, real parts only (QEMU under TCG, dnsmasq, the lab BMC, OpenSSH's `ssh`, the `vet`
command, ansible-playbook for release.yml).

The guest's spec asks for 64 GiB of memory, so the spec stage fails and the host is
held. The inventory leaves released hosts on (`vet_release_power_off: false`), so that
after `vet release` a real `ssh -i <hold key>` can show the key is refused; a second hold
opened in-process on the same boot then proves `vet release --power-off` powers it off.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.console.ssh import SshChannel
from harness.hold import open_hold
from harness.image import ImageArtifacts
from harness.inventory import load_inventory
from harness.leases import operator
from harness.power.qmp import QmpGuest
from harness.states import State
from harness.store import Store
from tests.fixtures.lab import guest, lab_for

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
              pytest.mark.lab]
ROOT = Path(__file__).resolve().parents[2]
HOST = "vm-held"


def vet(reports: Path, env: dict[str, str], *args: str,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "--reports-dir", str(reports),
                           *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def vet_pytest(inventory: Path, reports: Path, env: dict[str, str],
               timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "suites", "-m", "stage and (inventory or spec)",
         "--inventory", str(inventory), "--profile", "quick", "--reports-dir", str(reports),
         "-p", "no:cacheprovider", "-p", "no:xdist", "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def ssh(command: str, *remote: str) -> subprocess.CompletedProcess[str]:
    """Real OpenSSH with the operator's command; batch mode, so a refusal never prompts."""
    argv = shlex.split(command)
    return subprocess.run([argv[0], "-o", "BatchMode=yes", "-o", "ConnectTimeout=30",
                           *argv[1:], *remote], capture_output=True, text=True, timeout=90)


def test_failed_guest_is_held_entered_retried_and_released(live_image: ImageArtifacts,
                                                           tmp_path: Path) -> None:
    spec = {"memory": {"total_gib": 64, "tolerance_pct": 5}, "disks": [{"serial": "T14-NVME0"}]}
    storage = {"storage": {"mode": "destructive", "write_mib": 16, "read_scan_mib": 16}}
    with lab_for([guest(HOST, 14, spec=spec)], live_image, storage) as lab:
        hosts_yml = lab.inventory / "hosts.yml"
        data = yaml.safe_load(hosts_yml.read_text())
        data["all"]["vars"]["vet_release_power_off"] = False
        data["all"]["vars"]["vet_hold_ttl_h"] = 2
        hosts_yml.write_text(yaml.safe_dump(data, sort_keys=False))
        holds_dir = tmp_path / "holds"
        env = dict(lab.env, VET_HOLD_DIR=str(holds_dir))
        reports = tmp_path / "reports"
        spec_lab = lab.lab.spec
        qmp = QmpGuest(spec_lab.qmp_socket(spec_lab.guests[0], "lab"))

        done = vet_pytest(lab.inventory, reports, env)
        assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
        assert "held (vet holds, vet release HOST):" in done.stdout, done.stdout[-2000:]

        # The hold: recorded, key 0600 outside reports/, the host still on and booted.
        db = sqlite3.connect(reports / "vet.sqlite")
        db.row_factory = sqlite3.Row
        [hold] = db.execute("SELECT * FROM holds WHERE host = ?", (HOST,)).fetchall()
        assert hold["stage"] == "spec" and hold["released_at"] is None
        assert hold["key_via"] == "ssh", hold["note"]
        key = Path(hold["key_path"])
        assert key.is_relative_to(holds_dir) and key.stat().st_mode & 0o777 == 0o600
        assert not key.is_relative_to(reports)
        states = [r[0] for r in db.execute("SELECT to_state FROM transitions WHERE host = ? "
                                           "AND run_id = ? ORDER BY id",
                                           (HOST, hold["run_id"]))]
        assert states[-2:] == ["Failed", "Holding"], states
        assert 1.9 * 3600 < hold["expires_at"] - hold["opened_at"] < 2.1 * 3600
        assert qmp.is_on()
        script = next((lab.state_dir / "pxe" / "http" / "hosts").glob("*.ipxe"))
        assert "kernel" in script.read_text(), "the held host's boot script was changed"

        # `vet holds` shows the way in, and it works with the real ssh.
        listed = vet(reports, env, "holds", "--json")
        assert listed.returncode == 0, listed.stderr
        [view] = json.loads(listed.stdout)
        assert view["host"] == HOST and view["stage"] == "spec"
        assert "memory" in view["reason"]
        assert f"-i {key}" in view["ssh_command"]
        inside = ssh(view["ssh_command"], "cat /proc/cmdline")
        assert inside.returncode == 0, inside.stderr
        assert f"vet.run={hold['run_id']}" in inside.stdout

        # A second run on the held host is refused, naming who holds it and since when.
        again = vet_pytest(lab.inventory, reports, env, timeout=120)
        assert again.returncode == 4, again.stdout[-2000:] + again.stderr[-2000:]
        refusal = again.stdout + again.stderr
        assert f"host {HOST} is held" in refusal and hold["run_id"] in refusal
        assert f"{operator()}@" in refusal and " since " in refusal

        # Retry a stage on the held host: no provisioning, no power-on, override recorded.
        # The destructive storage stage: its run-token gate verifies the token of the run
        # that booted the host (the retry is a run of its own).
        retry = vet(reports, env, "retry", HOST, "--stage", "storage", "--override",
                    "wipe-probe")
        assert retry.returncode == 0, retry.stdout[-3000:] + retry.stderr[-2000:]
        [retry_run] = [r[0] for r in db.execute("SELECT id FROM runs WHERE id != ?",
                                                (hold["run_id"],))]
        retry_states = [r[0] for r in db.execute(
            "SELECT to_state FROM transitions WHERE run_id = ? ORDER BY id", (retry_run,))]
        assert retry_states == ["Queued", "Storage", "Reporting", "Completed"]
        written = dict(db.execute(
            "SELECT nodeid, outcome FROM test_results WHERE run_id = ?", (retry_run,)))
        assert [outcome for nodeid, outcome in written.items()
                if "destructive_write_verify" in nodeid] == ["passed"], written
        [override] = db.execute("SELECT * FROM overrides").fetchall()
        assert (override["run_id"], override["host"], override["override"],
                override["operator"], override["hold_id"]) == (
            retry_run, HOST, "wipe-probe", operator(), hold["id"])
        retry_events = [json.loads(line) for line in (reports / "runs" / retry_run / HOST /
                                                      "events.jsonl").read_text().splitlines()]
        kinds = {(e["source"], e["kind"]) for e in retry_events}
        assert ("harness", "attached") in kinds and ("harness", "hold-kept") in kinds
        assert ("harness", "provisioned") not in kinds and ("power", "power-on") not in kinds
        assert db.execute("SELECT released_at FROM holds").fetchone()[0] is None

        # Release (policy: leave on): the key stops working, the boot script boots the disk.
        saved = tmp_path / "saved"
        saved.mkdir(mode=0o700)
        shutil.copy2(key, saved / "id_ed25519")
        shutil.copy2(key.parent / "known_hosts", saved / "known_hosts")
        released = vet(reports, env, "release", HOST)
        assert released.returncode == 0, released.stdout + released.stderr
        assert "key revoked over SSH" in released.stdout and "left on" in released.stdout
        assert not key.exists(), "the hold's private key outlived the hold"
        refused = ssh(view["ssh_command"].replace(str(key), str(saved / "id_ed25519"))
                      .replace(str(key.parent / "known_hosts"), str(saved / "known_hosts")),
                      "true")
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused
        assert "kernel" not in script.read_text() and "exit" in script.read_text()
        assert qmp.is_on(), "released with vet_release_power_off: false, yet powered off"
        row = db.execute("SELECT released_by, released_at FROM holds").fetchone()
        assert row[0] == operator() and row[1] is not None
        state = db.execute("SELECT state FROM hosts WHERE run_id = ? AND name = ?",
                           (hold["run_id"], HOST)).fetchone()[0]
        assert state == State.RELEASED.value
        assert vet(reports, env, "holds").stdout.strip() == "no host is held"

        # A second hold on the same boot (in-process, the run's own key), released with
        # --power-off: the guest goes off.
        [entry] = load_inventory(lab.inventory)
        run_key = Path(env["XDG_STATE_HOME"]) / "vet" / "runs" / hold["run_id"] / HOST / \
            "id_ed25519"
        with Store(reports / "vet.sqlite") as store:
            store.start_run("manual-hold", "quick", str(lab.inventory))
            store.transition("manual-hold", HOST, State.QUEUED)
            store.transition("manual-hold", HOST, State.FAILED, "by hand")
            channel = SshChannel(HOST, hold["ip"], key_filename=run_key,
                                 host_key_fingerprint=hold["host_key"])
            try:
                second = open_hold(store, "manual-hold", entry, stage="spec", reason="by hand",
                                   address=hold["ip"], host_key=hold["host_key"],
                                   channel=channel, console=None)
            finally:
                channel.close()
        assert second["key_via"] == "ssh"
        assert ssh(second["ssh_command"], "true").returncode == 0
        off = vet(reports, env, "release", HOST, "--power-off")
        assert off.returncode == 0, off.stdout + off.stderr
        assert "powered off" in off.stdout
        assert not qmp.is_on()
