"""Fault matrix, in-guest rows (docs/RELIABILITY.md): two lab guests, PXE-booted at the
same time the way a run boots a host (harness.netboot, the console attached and watched
as the pytest plugin does), then hurt while a stage command runs. The first takes the
faults it survives, mildest first, and last a reset; the second only the kernel panic
(a guest that reboots takes minutes under TCG to come back, two boots at once cost less):

- the session's sshd killed, the guest's link set down (QMP set_link), the guest frozen
  (QMP stop): the command ends with a ChannelError within dead_after; once the host
  answers again the next command reconnects and what the lost session left running is
  killed;
- I/O errors (blkdebug, EIO 1 MiB into a disk, as the shipped lab's vm-baddisk): the
  storage stage's write-verify and its read scan fail naming the disk;
- a disk removed while its read scan starts (QMP device_del): the stage fails naming it,
  bounded, and no fio is left;
- a reset (QMP system_reset): the console shows the restart within seconds, the command
  ends with ConsoleDeath;
- a kernel panic (sysrq), on the second guest: ConsoleDeath with the panic lines.

Each row checks the verdict, the time it took, what is kept (events, console log, store
rows) and that nothing it ran is left on the guest; the lab fixture checks the controller.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.console.boot import DEFAULT_DEADLINES, BootPolicy, Step
from harness.console.channel import ChannelError
from harness.console.ssh import SshChannel
from harness.errors import ConsoleDeath
from harness.events import EventLog, read_events
from harness.host import HostUnderTest, RunContext, log_console
from harness.image import ImageArtifacts
from harness.models import CommandResult
from harness.netboot import BootedHost, netboot
from harness.power.qmp import QmpGuest
from harness.probes.lsblk import parse_lsblk
from harness.profiles import effective_params
from harness.store import Store
from tests.fixtures.lab import RunningLab, guest, lab_for
from tests.helpers import load_suite

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
              pytest.mark.lab, pytest.mark.faults]

NAME, PANIC = "vm-faults", "vm-panic"
NVME, IO_ERRORS, REMOVED = "T16-NVME0", "T16-IOERR0", "T16-GONE0"
#: Seconds of SSH silence that count as a dead peer (a lab guest alone under TCG).
DEAD_AFTER = 20.0
SLACK = 8.0  # scheduling on a loaded 2-core machine
#: From the fault to its console finding ("detected from the console within seconds").
DETECTED_WITHIN_S = 5.0
STAGES = {"storage": {"mode": "destructive", "write_mib": 8, "read_scan_mib": 1024}}


@dataclass
class Faulty:
    """The booted guest and what the test needs to hurt it and to look at it."""

    name: str
    lab: RunningLab
    boot: BootedHost
    host: HostUnderTest
    events: EventLog
    console_log: Path
    seen: EventWaiter

    def qmp(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """One command on the lab's own QMP socket of the guest."""
        spec = self.lab.lab.spec
        guest = next(g for g in spec.guests if g.name == self.name)
        return QmpGuest(spec.qmp_socket(guest, "lab"), timeout_s=30).execute(command,
                                                                             arguments)


class EventWaiter:
    """Wakes a waiting test when the host's event log gets an event it waits for."""

    def __init__(self, events: EventLog) -> None:
        self._cond = threading.Condition()
        self._events: list[dict[str, Any]] = []
        events.subscribe(self._on_event)

    def _on_event(self, event: dict[str, Any]) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self._events)

    def wait(self, matches: Callable[[dict[str, Any]], bool], timeout: float,
             since: int = 0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e for e in self._events[since:] if matches(e)), None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no such event within {timeout:g} s; last events: "
                                     f"{self._events[-5:]}")
            event = found()
            assert event is not None
            return event

    def since(self, mark: int) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._events[mark:])


def boot_guest(lab: RunningLab, name: str, workdir: Path) -> Faulty:
    """Boot a guest in-process as the plugin's host fixture does, console watched."""
    entry = lab.host(name)
    entry = dataclasses.replace(entry, connection=dataclasses.replace(
        entry.connection, dead_after_s=DEAD_AFTER))
    run_id = f"faults-{secrets.token_hex(3)}"
    workdir.mkdir(parents=True, exist_ok=True)
    store = Store(workdir / "vet.sqlite")
    store.start_run(run_id, "quick", str(lab.inventory))
    store.register_host(run_id, name)
    events = EventLog(workdir / run_id / name / "events.jsonl", run_id, name)
    seen = EventWaiter(events)
    console_log = workdir / run_id / name / "console.log"
    # A busy 2-core machine can take minutes from userspace to VET-READY under TCG.
    policy = BootPolicy(deadlines={**DEFAULT_DEADLINES, Step.USERSPACE: 900.0})
    try:
        boot = netboot(entry, run_id=run_id, console_log=console_log, events=events,
                       policy=policy, on_console_open=lambda console, watch:
                       log_console(console, events))
    except BaseException:
        events.close()
        store.close()
        raise
    assert boot.console is not None and boot.watch is not None
    host = HostUnderTest(entry, boot.channel, RunContext(run_id, "quick", store, workdir),
                         effective_params("quick", entry), events=events)
    host.attach_console(boot.console, boot.watch, subscribed=True)
    return Faulty(name, lab, boot, host, events, console_log, seen)


def close_guest(faulty: Faulty) -> None:
    faulty.host.close()  # its channel, the console, the event log
    assert faulty.boot.console is not None
    faulty.boot.console.close()
    faulty.host.ctx.store.close()


@contextlib.contextmanager
def booted(lab: RunningLab, workdir: Path, names: tuple[str, ...]) -> Iterator[list[Faulty]]:
    """Boot `names` at the same time; close them all afterwards."""
    old_state = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = lab.env["XDG_STATE_HOME"]
    up: list[Faulty] = []
    try:
        with ThreadPoolExecutor(len(names), thread_name_prefix="fault-boot") as pool:
            futures = [pool.submit(boot_guest, lab, name, workdir / name) for name in names]
            errors = []
            for future in futures:
                try:
                    up.append(future.result())
                except Exception as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]
        yield up
    finally:
        for faulty in up:
            close_guest(faulty)
        if old_state is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = old_state


def test_in_guest_faults(live_image: ImageArtifacts, tmp_path: Path) -> None:
    """The rows share two boots (minutes under TCG) and run in this order: each leaves the
    first guest usable for the next, the reset ends it. One test, so xdist cannot split
    them."""
    disks = [{"bus": "nvme", "serial": NVME, "size_gib": 0.1},
             {"bus": "virtio", "serial": IO_ERRORS, "size_gib": 0.1,
              "io_errors": [{"event": "write_aio", "sector": 2048},
                            {"event": "read_aio", "sector": 2048}]},
             {"bus": "scsi", "serial": REMOVED, "size_gib": 1}]
    expected = {"disks": [{"serial": NVME}, {"serial": IO_ERRORS}, {"serial": REMOVED}]}
    with lab_for([guest(NAME, 16, power="qemu", disks=disks, spec=expected),
                  guest(PANIC, 17, power="qemu")], live_image, STAGES) as lab, \
            booted(lab, tmp_path, (NAME, PANIC)) as (faulty, panicky):
        check_sshd_killed_mid_command(faulty)
        check_link_down_mid_command(faulty)
        check_frozen_guest_mid_command(faulty)
        check_write_io_errors_fail_the_storage_stage(faulty)
        check_disk_removed_during_the_read_scan(faulty)
        check_reset_mid_command_is_a_console_death(faulty)
        check_kernel_panic_mid_command_is_a_console_death(panicky)


def in_background(host: HostUnderTest, command: str, timeout: float
                  ) -> tuple[Future[CommandResult], ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1, thread_name_prefix="fault-command")
    return pool.submit(host.run, command, timeout), pool


def started(faulty: Faulty, word: str, since: int) -> None:
    """Wait until the command printed `word`: it is running on the host."""
    faulty.seen.wait(lambda e: e["kind"] == "line" and e.get("text") == word, 120, since)


def still_running(host: HostUnderTest, pattern: str) -> list[str]:
    """Processes on the host whose command line matches `pattern` (a regex)."""
    listing = host.run("ps -eo pid=,args=", 60, check=True).stdout
    return [line for line in listing.splitlines()
            if re.search(pattern, line) and "ps -eo" not in line]


def lost_mid_command(faulty: Faulty, tag: str, hurt: Callable[[], None],
                     heal: Callable[[], None]) -> tuple[ChannelError, float]:
    """Run a command, hurt the host once it runs, expect a ChannelError; heal the host.
    Returns the error and the seconds from the hurt to the error."""
    mark = faulty.seen.mark()
    future, pool = in_background(faulty.host, f"echo {tag}; sleep 6{tag[-2:]}", 600)
    try:
        started(faulty, tag, mark)
        hurt_at = time.monotonic()
        try:
            hurt()
            with pytest.raises(ChannelError) as lost:
                future.result(timeout=DEAD_AFTER + 60)
            took = time.monotonic() - hurt_at
        finally:
            heal()
    finally:
        pool.shutdown(wait=True)
    error = lost.value
    assert NAME in str(error) and f"sleep 6{tag[-2:]}" in str(error), error
    recorded = [e for e in faulty.seen.since(mark) if e["kind"] == "command-error"]
    assert recorded and f"sleep 6{tag[-2:]}" in recorded[0]["error"], "the error is not in " \
        "the host's event log"
    # The host answers again: the next command reconnects, and vet has killed what the
    # lost session left running before it runs anything else.
    assert not still_running(faulty.host, rf"sleep 6{tag[-2:]}$"), \
        "the command of the lost session still runs on the host"
    return error, took


def check_sshd_killed_mid_command(faulty: Faulty) -> None:
    boot = faulty.boot

    def kill_sshd() -> None:
        # From a second connection, as a person on the host would: every session's sshd
        # (privileged monitor and child), its own too; the listener stays.
        killer = SshChannel("killer", boot.announce.ip, key_filename=str(boot.key_file),
                            host_key_fingerprint=boot.announce.hostkey_fingerprint,
                            connect_timeout=60, dead_after=DEAD_AFTER)
        try:
            with contextlib.suppress(ChannelError):
                killer.run("pkill -KILL -f '^sshd: root'", 30)
        finally:
            killer.close()

    error, took = lost_mid_command(faulty, "kill-41", kill_sshd, lambda: None)
    assert "connection lost" in str(error) or "session on the host ended" in str(error)
    assert took < DEAD_AFTER + SLACK, f"noticed after {took:.1f} s"


def check_link_down_mid_command(faulty: Faulty) -> None:
    error, took = lost_mid_command(
        faulty, "link-42", lambda: faulty.qmp("set_link", {"name": "n0", "up": False}),
        lambda: faulty.qmp("set_link", {"name": "n0", "up": True}))
    assert "no answer from sshd" in str(error), error
    assert took < DEAD_AFTER + SLACK, f"noticed after {took:.1f} s"


def check_frozen_guest_mid_command(faulty: Faulty) -> None:
    error, took = lost_mid_command(faulty, "stop-43", lambda: faulty.qmp("stop"),
                                   lambda: faulty.qmp("cont"))
    assert "no answer from sshd" in str(error) and "frozen" in str(error), error
    assert took < DEAD_AFTER + SLACK, f"noticed after {took:.1f} s"
    assert faulty.host.death is None, "a frozen guest is no console death"


def disk_names(host: HostUnderTest) -> dict[str, str]:
    """Disk serial -> kernel name."""
    listing = host.run("lsblk -J -b -O", 60, check=True).stdout
    return {d.serial: d.name for d in parse_lsblk(listing) if d.type == "disk" and d.serial}


def check_write_io_errors_fail_the_storage_stage(faulty: Faulty) -> None:
    host = faulty.host
    names = disk_names(host)
    host.enter_stage("storage")
    started_at = time.monotonic()
    with pytest.raises(AssertionError) as failed:
        load_suite("storage").test_destructive_write_verify(host)
    assert time.monotonic() - started_at < 300
    message = str(failed.value)
    bad = names[IO_ERRORS]
    assert re.search(rf"/dev/{bad} \({IO_ERRORS}\): (I/O error \(errno 5\)|fio exited)",
                     message), message
    assert NVME not in message and REMOVED not in message, message
    kept = {r["name"] for r in host.ctx.store.records(host.ctx.run_id, NAME)}
    assert "storage gates" in kept and f"write-verify {names[NVME]}" in kept, kept
    dmesg = host.run("dmesg", 60, check=True).stdout
    assert re.search(rf"I/O error, dev {bad}, sector \d+", dmesg), dmesg[-2000:]
    assert not still_running(host, r"\bfio\b")


def check_disk_removed_during_the_read_scan(faulty: Faulty) -> None:
    host = faulty.host
    name = disk_names(host)[REMOVED]
    [path] = [f"/machine/peripheral-anon/{d['name']}"
              for d in faulty.qmp("qom-list", {"path": "/machine/peripheral-anon"})
              if d["name"].startswith("device[")
              and _qom_serial(faulty, f"/machine/peripheral-anon/{d['name']}") == REMOVED]
    host.enter_stage("storage")
    mark = faulty.seen.mark()
    future, pool = in_background_call(lambda: load_suite("storage")
                                      .test_every_disk_reads_back(host))
    try:
        faulty.seen.wait(lambda e: e["kind"] == "command-start"
                         and f"--name=vet-read-{name} " in e.get("command", ""), 300, mark)
        faulty.qmp("device_del", {"id": path})
        removed_at = time.monotonic()
        with pytest.raises(AssertionError) as failed:
            future.result(timeout=600)
        took = time.monotonic() - removed_at
    finally:
        pool.shutdown(wait=True)
    message = str(failed.value)
    assert f"/dev/{name} ({REMOVED})" in message, message
    # The disk with read errors fails the same scan; the healthy one does not.
    assert re.search(rf"/dev/\w+ \({IO_ERRORS}\): (read error within|fio exited)",
                     message), message
    assert NVME not in message, message
    assert took < 120, f"the stage ended {took:.0f} s after the disk went"
    assert REMOVED not in disk_names(host), "the disk is still there"
    assert not still_running(host, r"\bfio\b")


def _qom_serial(faulty: Faulty, path: str) -> str | None:
    with contextlib.suppress(Exception):
        return str(faulty.qmp("qom-get", {"path": path, "property": "serial"}))
    return None


def in_background_call(call: Callable[[], None]) -> tuple[Future[None], ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1, thread_name_prefix="fault-stage")
    return pool.submit(call), pool


def console_death(faulty: Faulty, tag: str | None, command: str, hurt: Callable[[], None]
                  ) -> tuple[ConsoleDeath, float, list[str]]:
    """Run `command`, hurt the host once it printed `tag` (at once when None: the command
    hurts it itself); expect ConsoleDeath, its console finding within DETECTED_WITHIN_S.
    Returns the error, the seconds from the hurt to it, and the console lines since the
    command began."""
    host = faulty.host
    assert host.watch is not None
    console_mark = host.watch.mark()
    mark = faulty.seen.mark()
    future, pool = in_background(host, command, 600)
    try:
        if tag is not None:
            started(faulty, tag, mark)
        hurt_at, hurt_wall = time.monotonic(), time.time()
        hurt()
        with pytest.raises(ConsoleDeath) as died:
            future.result(timeout=DEAD_AFTER + 60)
        took = time.monotonic() - hurt_at
    finally:
        pool.shutdown(wait=True)
    piece = host.watch.slice(console_mark)
    findings = [e for e in faulty.seen.since(mark)
                if e["kind"] == "finding" and e["severity"] == "critical"]
    assert findings, "no critical console finding in the event log"
    detected = findings[0]["at"] - hurt_wall
    assert detected < DETECTED_WITHIN_S, f"the console showed it after {detected:.1f} s"
    return died.value, took, list(piece.lines)


def check_reset_mid_command_is_a_console_death(faulty: Faulty) -> None:
    death, took, lines = console_death(faulty, "reset-44", "echo reset-44; sleep 644",
                                       lambda: faulty.qmp("system_reset"))
    assert "unexpected reboot" in str(death) and NAME in str(death), death
    # the host's OS is gone: the command is dropped at once, not after dead_after
    assert took < DETECTED_WITHIN_S + SLACK, f"the stage ended {took:.1f} s after the reset"
    assert any("SeaBIOS" in line for line in lines), lines[-20:]
    assert faulty.host.death is not None
    assert any("SeaBIOS" in line for line in faulty.host.death.evidence)
    assert "SeaBIOS" in faulty.console_log.read_text(errors="replace")
    faulty.qmp("stop")  # no use for it any more: spare the CPU its reboot would take


def check_kernel_panic_mid_command_is_a_console_death(faulty: Faulty) -> None:
    # No tag to wait for: the crash follows the command's first output so closely that
    # sshd may never send it. Timed from before the command starts (a bound, not less).
    death, took, lines = console_death(
        faulty, None, "echo c > /proc/sysrq-trigger; sleep 645", lambda: None)
    assert "panic on the console" in str(death) and PANIC in str(death), death
    assert "sysrq triggered crash" in str(death), death
    assert took < DETECTED_WITHIN_S + SLACK, f"the stage ended {took:.1f} s after the panic"
    assert any("Kernel panic - not syncing" in line for line in lines), lines[-20:]
    kept = read_events(faulty.events.path)
    assert any(e["kind"] == "finding" and e["finding"] == "panic" for e in kept)
    assert "Kernel panic - not syncing" in faulty.console_log.read_text(errors="replace")
