"""The virtual lab end to end, with real parts only: dnsmasq and the HTTP server in a
network namespace, QEMU guests (TCG) PXE-booting the real live image through iPXE, the
lab's IPMI BMC answering the real ipmitool, and pytest driving the stages.

Each test brings up a lab of its own (unique namespace, subnet and ports) and checks
on the way out that `down` left nothing behind. Needs root and the live image (built
on first use, then cached)."""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.console.boot import BootTracker
from harness.console.serial import SerialChannel
from harness.console.watch import ConsoleWatch
from harness.image import ImageArtifacts
from harness.lab.spec import GuestSpec
from harness.models import PowerConfig, Severity
from harness.power.qmp import QmpGuest
from harness.report_html import ReportError, find_allure
from tests.fixtures.lab import BMC_PASSWORD, RunningLab, free_port, guest, ipmitool, lab_for
from tests.fixtures.secret_scan import (
    private_keys_under,
    running_command_lines,
    scan_tree,
    search,
    strace_prefix,
    traced_commands,
)

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
              pytest.mark.lab]
ROOT = Path(__file__).resolve().parents[2]
#: Short stages: this proves the path, not the hardware.
FAST_STAGES = {"cpu": {"duration_s": 5}, "storage": {"runtime_s": 3, "size_mib": 16,
                                                     "read_scan_mib": 32},
               "network": {"duration_s": 3}}


def vet_pytest(lab_inventory: Path, reports: Path, env: dict[str, str], *extra: str,
               timeout: float = 900, wrap: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """A vet run against the lab; `wrap` goes before the command (e.g. strace)."""
    return subprocess.run(
        [*wrap, sys.executable, "-m", "pytest", "suites", "-m", "stage", "--inventory",
         str(lab_inventory), "--profile", "quick", "--reports-dir", str(reports),
         "-p", "no:cacheprovider", "-p", "no:xdist", "-q", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def events(reports: Path, host: str) -> list[dict[str, object]]:
    [path] = reports.glob(f"runs/*/{host}/events.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pxe_boot_runs_every_stage_and_releases_the_host(live_image: ImageArtifacts,
                                                         tmp_path: Path) -> None:
    spec = {"disks": [{"serial": "T11-NVME0", "size_gb": 0.27}], "memory": {"total_gib": 0.5,
                                                                           "tolerance_pct": 25}}
    vault_password = "vault-" + secrets.token_hex(8)
    with lab_for([guest("vm-e2e", 11, spec=spec)], live_image, FAST_STAGES,
                 vault_password=vault_password) as lab:
        reports = tmp_path / "reports"
        trace = tmp_path / "execve.trace"  # every program the run started, with its argv
        done = vet_pytest(lab.inventory, reports, lab.env, "--vault-password-file",
                          str(lab.vault_password_file), wrap=strace_prefix(trace))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]

        db = sqlite3.connect(reports / "vet.sqlite")
        states = [row[0] for row in db.execute(
            "SELECT to_state FROM transitions WHERE host='vm-e2e' ORDER BY id")]
        assert states[:4] == ["Queued", "PowerOn", "Booting", "InventoryCheck"], states
        assert states[-1] == "Completed"
        boot = dict(db.execute("SELECT name, value FROM measurements "
                               "WHERE host='vm-e2e' AND stage='boot'").fetchall())
        assert 0 < boot["boot_ipxe_s"] < boot["boot_vet_ready_s"] < 600, boot
        # one clean boot: each step entered once (a console line fed to the boot tracker
        # twice would enter each twice)
        steps = [e["step"] for e in events(reports, "vm-e2e") if e["kind"] == "boot-step"]
        assert len(steps) == len(set(steps)) and "VET-READY" in steps, steps
        passed = db.execute("SELECT count(*) FROM test_results WHERE host='vm-e2e' "
                            "AND outcome='passed'").fetchone()[0]
        assert passed >= 5

        kinds = [(e["source"], e["kind"]) for e in events(reports, "vm-e2e")]
        for wanted in [("provision", "ansible"), ("harness", "provisioned"),
                       ("power", "power-on"), ("console", "boot-step"), ("harness", "booted"),
                       ("ssh", "command-start"), ("harness", "released"),
                       ("power", "power-off")]:
            assert wanted in kinds, f"no {wanted} event"
        [console_log] = reports.glob("runs/*/vm-e2e/console.log")
        text = console_log.read_text(errors="replace")
        assert "VET-READY ip=" + lab.ip(11) in text
        assert "vet.token=" not in text, "the run token reached the console log"

        # Released: its boot script now boots the local disk, and it is powered off.
        [script] = (lab.state_dir / "pxe" / "http" / "hosts").glob("*.ipxe")
        assert "kernel" not in script.read_text() and "exit" in script.read_text()
        spec_lab = lab.lab.spec
        qmp = QmpGuest(spec_lab.qmp_socket(spec_lab.guests[0], "lab"))
        assert not qmp.is_on()

        assert_no_secrets(lab, reports, trace, vault_password,
                          done.stdout + done.stderr)


def assert_no_secrets(lab: RunningLab, reports: Path, trace: Path, vault_password: str,
                      run_output: str) -> None:
    """The run's known secrets (the vaulted BMC password and the vault password, the run
    token, the token HMAC key, the controller's private keys) are nowhere in what the run
    wrote (reports/: store, events, console logs, evidence, Allure results, the JSON and
    HTML reports), in its output, or on any command line it ran or that runs now."""
    report = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--reports-dir", str(reports), "report",
         *(["--no-html"] if _allure_missing() else [])],
        cwd=ROOT, env=lab.env, capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stdout + report.stderr
    token_key = lab.inventory.parent / "token.key"
    keys = private_keys_under(Path(lab.env["XDG_STATE_HOME"]))
    assert keys, "no controller key found: where did the run keep it?"
    known = {"BMC password (vaulted)": BMC_PASSWORD.encode(),
             "vault password": vault_password.encode(),
             "token HMAC key": token_key.read_bytes().strip(), **keys}
    assert BMC_PASSWORD not in lab.inventory.joinpath("hosts.yml").read_text()

    scan = scan_tree(reports, known)
    scanned = {p.name for p in scan.files}
    assert {"vet.sqlite", "events.jsonl", "console.log", "summary.json"} <= scanned, scanned
    assert _allure_missing() or "report.html" in scanned
    findings = scan.findings
    findings += search("the run's output", run_output.encode(), known)
    findings += search("vet report's output", (report.stdout + report.stderr).encode(), known)

    commands = traced_commands(trace)
    programs = {Path(argv[0]).name for argv in commands if argv}
    assert {"ipmitool", "ansible-playbook"} <= programs, sorted(programs)
    ipmi = [argv for argv in commands if argv and Path(argv[0]).name == "ipmitool"]
    assert all("-E" in argv and "-P" not in argv for argv in ipmi), ipmi
    for argv in commands:
        findings += search(f"command line {' '.join(argv)[:80]!r}", " ".join(argv).encode(),
                           known)
    for pid, cmdline in running_command_lines():  # other tests' tokens are not ours to judge
        findings += search(f"command line of pid {pid}", cmdline, known, tokens=False)
    assert not findings, "secrets leaked:\n" + "\n".join(findings)


def _allure_missing() -> bool:
    try:
        find_allure()
    except ReportError:
        return True
    return False


def test_a_wrong_token_is_refused_before_any_stage(live_image: ImageArtifacts,
                                                   tmp_path: Path) -> None:
    with lab_for([guest("vm-forged", 12, power="qemu")], live_image, FAST_STAGES) as lab:
        reports = tmp_path / "reports"
        done = vet_pytest(lab.inventory, reports, lab.env, "-p", "tests.fixtures.forged_token")
        assert done.returncode == 1, done.stdout[-3000:]
        assert "refused, not touched further" in done.stdout
        assert "does not verify" in done.stdout

        db = sqlite3.connect(reports / "vet.sqlite")
        state, reason = db.execute("SELECT to_state, reason FROM transitions WHERE "
                                   "host='vm-forged' ORDER BY id DESC LIMIT 1").fetchone()
        assert state == "Failed" and "refused" in reason
        assert db.execute("SELECT count(*) FROM test_results WHERE host='vm-forged' AND "
                          "outcome='passed'").fetchone()[0] == 0
        kinds = {(e["source"], e["kind"]) for e in events(reports, "vm-forged")}
        assert ("harness", "booted") not in kinds
        assert not any(source == "ssh" for source, _ in kinds), "a command ran on it"
        # A failed host is not powered off behind the operator's back.
        spec_lab = lab.lab.spec
        assert QmpGuest(spec_lab.qmp_socket(spec_lab.guests[0], "lab")).is_on()


def test_ipmitool_powers_a_guest_and_a_stranger_gets_no_lease(
        live_image: ImageArtifacts, tmp_path: Path) -> None:
    with lab_for([guest("vm-bmc", 13)], live_image) as lab:
        spec_lab = lab.lab.spec
        qmp = QmpGuest(spec_lab.qmp_socket(spec_lab.guests[0], "lab"))
        status = ipmitool(lab, "vm-bmc", "chassis", "power", "status")
        assert status.returncode == 0 and "is off" in status.stdout, status
        on = ipmitool(lab, "vm-bmc", "chassis", "power", "on")
        assert on.returncode == 0, on.stderr
        assert qmp.run_state() == "running"
        assert "is on" in ipmitool(lab, "vm-bmc", "chassis", "power", "status").stdout
        off = ipmitool(lab, "vm-bmc", "chassis", "power", "off")
        assert off.returncode == 0, off.stderr
        assert not qmp.is_on()
        assert "is off" in ipmitool(lab, "vm-bmc", "chassis", "power", "status").stdout

        # A guest whose MAC the inventory does not list: dnsmasq ignores it, iPXE gives up.
        mac = "52:54:00:ee:ee:01"
        stranger = GuestSpec(name="stranger", mac=mac, ip=None, console_port=free_port(),
                             power=PowerConfig("qemu", {"qmp": str(
                                 lab.state_dir / "guests" / "stranger" / "qmp-power.sock")}),
                             memory_mib=256, cpus=1)
        lab.lab.add_guest(stranger)
        tracker = BootTracker("stranger")
        watch = ConsoleWatch(tracker=tracker)
        console = SerialChannel("stranger", f"socket://127.0.0.1:{stranger.console_port}",
                                console_log=tmp_path / "stranger.log")
        console.subscribe_lines(watch.feed_lines)
        console.open()
        try:
            tracker.power_on()
            QmpGuest(spec_lab.qmp_socket(stranger, "power")).power_on()
            finding = watch.wait_for_death(timeout=240)
        finally:
            console.close()
        assert finding is not None, "no verdict from the stranger's console in 240 s"
        assert finding.kind in ("ipxe-error", "pxe-error", "deadline"), finding
        assert finding.severity is Severity.CRITICAL
        dhcp = (Path(spec_lab.pxe.root) / "dnsmasq.log").read_text()
        assert re.search(rf"DHCPDISCOVER\(\S+\) {mac} ignored", dhcp), dhcp[-2000:]
        assert not re.search(rf"DHCP(OFFER|ACK)\(\S+\) \S+ {mac}", dhcp)
        leases = Path(spec_lab.pxe.root) / "dnsmasq.leases"
        assert mac not in (leases.read_text() if leases.exists() else "")
        started = time.monotonic()
    assert time.monotonic() - started < 60, "taking the lab down took over a minute"
