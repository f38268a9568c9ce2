"""Fault matrix, boot rows (docs/RELIABILITY.md): boots that never reach VET-READY, on a
lab of one inventory guest and one stranger, each driven through harness.netboot as a
run boots a host. None of them reaches userspace, so they are cheap under TCG.

- a boot that stalls in one step (the guest frozen with QMP `stop` as iPXE hands over to
  the kernel): the kernel step's deadline ends it, the error says where it stopped;
- a boot loop (the guest reset each time its NIC's iPXE starts): "boot loop" once the
  firmware started three times;
- a host whose MAC the PXE server does not allowlist, and a host booting while dnsmasq is
  down: no lease, iPXE gives up, the error says it stopped at iPXE.

Each row checks the BootFailed message and timeline, the time bound, what is kept (the
console log, the host's events) and that the console reader is gone; the lab fixture
checks that nothing of the lab is left on the machine.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.console.boot import DEFAULT_DEADLINES, BootPolicy, Step
from harness.console.serial import SerialChannel
from harness.events import EventLog, read_events
from harness.image import ImageArtifacts
from harness.lab.lab import read_state
from harness.lab.spec import GuestSpec
from harness.models import Host, PowerConfig
from harness.netboot import BootFailed, netboot
from harness.power.qmp import QmpGuest
from tests.fixtures.lab import RunningLab, free_port, guest, lab_for
from tests.helpers import gone

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
              pytest.mark.lab, pytest.mark.faults]

NAME = "vm-boot"
KERNEL_DEADLINE_S = 20.0
SLACK = 8.0
STRANGER_MAC = f"52:54:00:ee:{secrets.token_hex(1)}:02"


@contextlib.contextmanager
def state_home(lab: RunningLab) -> Iterator[None]:
    """Run keys go to the lab's XDG dir, as for a run against it."""
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = lab.env["XDG_STATE_HOME"]
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = old


class Boot:
    """One netboot attempt of `host` that must fail; what it left to look at."""

    def __init__(self, lab: RunningLab, host: Host, workdir: Path,
                 on_line: Callable[[str], None] | None = None,
                 policy: BootPolicy | None = None) -> None:
        self.run_id = f"faults-{secrets.token_hex(3)}"
        self.console_log = workdir / self.run_id / "console.log"
        self.events = EventLog(workdir / self.run_id / "events.jsonl", self.run_id, host.name)
        started = time.monotonic()
        try:
            with pytest.raises(BootFailed) as failed:
                netboot(host, run_id=self.run_id, console_log=self.console_log,
                        events=self.events, policy=policy,
                        on_console_open=lambda console, watch: self._opened(console, on_line))
        finally:
            self.events.close()
        self.took = time.monotonic() - started
        self.error = failed.value
        self.message = str(failed.value)
        self.steps = [e.step.label for e in failed.value.timeline]
        assert not any(t.name == f"serial-reader-{host.name}" and t.is_alive()
                       for t in threading.enumerate()), "the console reader still runs"

    @staticmethod
    def _opened(console: SerialChannel, on_line: Callable[[str], None] | None) -> None:
        if on_line is not None:
            console.subscribe(lambda line, at: on_line(line))

    def kept(self) -> tuple[str, set[tuple[str, str]]]:
        """The console log's text and the (source, kind) of the events kept."""
        events = read_events(self.events.path)
        return (self.console_log.read_text(errors="replace"),
                {(e["source"], e["kind"]) for e in events})


class Qmp:
    """The lab's QMP socket of a guest, used from one worker thread (the console reader
    must not block on QEMU)."""

    def __init__(self, lab: RunningLab, guest: GuestSpec) -> None:
        self.guest = QmpGuest(lab.lab.spec.qmp_socket(guest, "lab"), timeout_s=30)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="fault-qmp")

    def later(self, action: Callable[[QmpGuest], object]) -> None:
        self.pool.submit(action, self.guest)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def test_boots_that_never_reach_the_live_image(live_image: ImageArtifacts,
                                               tmp_path: Path) -> None:
    with lab_for([guest(NAME, 17, power="qemu")], live_image) as lab, state_home(lab):
        spec = lab.lab.spec
        qmp = Qmp(lab, spec.guests[0])
        try:
            check_stall_in_one_step(lab, qmp, tmp_path)
            check_bootloop(lab, qmp, tmp_path)
            check_mac_not_allowlisted(lab, tmp_path)
            check_dnsmasq_down(lab, tmp_path)
        finally:
            qmp.close()


def check_stall_in_one_step(lab: RunningLab, qmp: Qmp, workdir: Path) -> None:
    frozen_at: list[float] = []

    def on_line(line: str) -> None:
        if "vet-ipxe: starting the kernel" in line and not frozen_at:
            frozen_at.append(time.monotonic())
            qmp.later(lambda guest: guest.execute("stop"))

    policy = BootPolicy(deadlines={**DEFAULT_DEADLINES, Step.KERNEL: KERNEL_DEADLINE_S})
    boot = Boot(lab, lab.host(NAME), workdir, on_line, policy)
    assert frozen_at, f"the boot never reached the kernel: {boot.message}"
    assert f"no initramfs {KERNEL_DEADLINE_S:g} s after kernel" in boot.message, boot.message
    assert boot.steps[-1] == "kernel" and "iPXE" in boot.steps, boot.steps
    waited = time.monotonic() - frozen_at[0]
    assert KERNEL_DEADLINE_S <= waited < KERNEL_DEADLINE_S + SLACK, f"ended after {waited:.1f} s"
    console, events = boot.kept()
    assert "vet-ipxe: starting the kernel" in console
    # QMP `stop` lands a moment after the line that asked for it: the kernel may have
    # printed a few more characters by then. The message names whatever came last.
    quoted = re.search(r"last console line: ('[^']*'|\"[^\"]*\")", boot.message)
    assert quoted, boot.message
    last = ast.literal_eval(quoted[1])
    assert last and last in console[-2000:], (last, console[-300:])
    assert {("harness", "provisioned"), ("power", "power-on")} <= events
    qmp.guest.power_off()


def check_bootloop(lab: RunningLab, qmp: Qmp, workdir: Path) -> None:
    resets: list[float] = []

    def on_line(line: str) -> None:
        if "iPXE initialising devices" in line and len(resets) < 5:
            resets.append(time.monotonic())
            qmp.later(lambda guest: guest.cycle())

    boot = Boot(lab, lab.host(NAME), workdir, on_line)
    assert "boot loop: firmware started 3 times without reaching VET-READY" in boot.message, \
        boot.message
    assert boot.steps.count("firmware") == 3, boot.steps
    assert len(resets) >= 2
    assert boot.took < 240, f"took {boot.took:.0f} s"
    console, events = boot.kept()
    assert console.count("SeaBIOS (version") >= 3
    assert ("power", "power-on") in events
    qmp.pool.submit(lambda: None).result(timeout=60)  # the last queued reset is done
    qmp.guest.power_off()


def check_mac_not_allowlisted(lab: RunningLab, workdir: Path) -> None:
    spec = lab.lab.spec
    qmp_path = str(lab.state_dir / "guests" / "stranger" / "qmp-power.sock")
    stranger = GuestSpec(name="stranger", mac=STRANGER_MAC, ip=None, console_port=free_port(),
                         power=PowerConfig("qemu", {"qmp": qmp_path}), memory_mib=256, cpus=1)
    lab.lab.add_guest(stranger)
    host = dataclasses.replace(lab.host(NAME), name="stranger", macs=(STRANGER_MAC,),
                               console=f"socket://127.0.0.1:{stranger.console_port}",
                               power=PowerConfig("qemu", {"qmp": qmp_path}))
    boot = no_lease(lab, host, workdir)
    dhcp = (Path(spec.pxe.root) / "dnsmasq.log").read_text()
    assert re.search(rf"DHCPDISCOVER\(\S+\) {STRANGER_MAC} ignored", dhcp), dhcp[-2000:]
    assert "stranger" in boot.message, boot.message
    QmpGuest(spec.qmp_socket(stranger, "lab")).power_off()


def check_dnsmasq_down(lab: RunningLab, workdir: Path) -> None:
    state = read_state(lab.lab.spec)
    assert state is not None
    [pid] = [int(p["pid"]) for p in state.processes if p["what"] == "dnsmasq"]
    os.kill(pid, signal.SIGTERM)
    assert gone(pid, 10), "dnsmasq did not stop"
    no_lease(lab, lab.host(NAME), workdir)


def no_lease(lab: RunningLab, host: Host, workdir: Path) -> Boot:
    """Boot `host` where no DHCP server answers it: iPXE gives up, BootFailed says so."""
    boot = Boot(lab, host, workdir)
    assert re.search(r"ipxe error during iPXE: '(No more network devices|Nothing to boot|"
                     r"Could not boot)", boot.message), boot.message
    assert boot.steps[-1] == "iPXE" and "kernel" not in boot.steps, boot.steps
    assert boot.took < 240, f"took {boot.took:.0f} s"
    console, events = boot.kept()
    assert "No configuration methods succeeded" in console or "Nothing to boot" in console
    assert ("power", "power-on") in events
    return boot
