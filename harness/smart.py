"""SMART on a host: which disks, read with which `-d`, judged; self-tests run to their end.

The disks are lsblk's (every disk the kernel sees, so one without SMART, e.g. virtio, is
reported rather than silently left out) merged with `smartctl --scan-open` (which names
the right `-d` and the member disks behind a RAID controller, e.g. `-d megaraid,3`).
Every verdict comes from harness.judge.judge_smartctl; this module only runs the tools.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from harness.host import HostUnderTest
from harness.judge import Judgement, Reasons, SmartThresholds, judge_smartctl
from harness.probes import ParseError
from harness.probes.lsblk import parse_lsblk
from harness.probes.smartctl import SmartReport, parse_smartctl
from harness.probes.smartctl_scan import parse_smartctl_scan
from harness.probes.smartctl_selftest import SelfTestStatus, parse_self_test_status

#: Kernel block devices that are never physical disks.
_NOT_A_DISK = re.compile(r"^(loop|ram|zram|sr|fd|nbd|md|dm-|drbd|rbd)")
#: An NVMe namespace (nvme0n1, nvme0c0n1) -> its controller, which smartctl reads once.
_NVME_NAMESPACE = re.compile(r"^(nvme\d+)(?:c\d+)?n\d+$")
SMARTCTL_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class SmartDisk:
    path: str  # what smartctl is given: /dev/sda, /dev/nvme0, /dev/bus/0
    device_type: str | None  # its -d value; None: smartctl detects it
    serial: str | None  # as lsblk sees it (None for RAID members: smartctl tells)
    model: str | None

    @property
    def args(self) -> str:
        kind = f"-d {shlex.quote(self.device_type)} " if self.device_type else ""
        return kind + shlex.quote(self.path)

    @property
    def label(self) -> str:
        kind = f" [-d {self.device_type}]" if self.device_type else ""
        serial = f" (serial {self.serial})" if self.serial else ""
        return f"{self.path}{kind}{serial}"


@dataclass(frozen=True)
class DiskReading:
    """One disk's SMART report and its judgement; report None: smartctl's output was unusable."""

    disk: SmartDisk
    report: SmartReport | None
    judgement: Judgement

    @property
    def serial(self) -> str | None:
        return (self.report.serial_number if self.report else None) or self.disk.serial

    @property
    def readable(self) -> bool:
        """smartctl read health data (False: no SMART, e.g. virtio, or not readable)."""
        return self.report is not None and not self.judgement.inconclusive


def smart_disks(host: HostUnderTest) -> list[SmartDisk]:
    """Every physical disk, with the -d smartctl's own scan found for it."""
    listing = host.run("lsblk -J -b -O", timeout=60, check=True)
    scan = host.run("smartctl --scan-open -j", timeout=SMARTCTL_TIMEOUT_S)
    try:
        scanned = parse_smartctl_scan(scan.stdout)
    except ParseError:
        scanned = []  # an old smartctl without -j scan: its own detection still works
    by_name = {device.name: device for device in scanned}
    disks: list[SmartDisk] = []
    seen: set[str] = set()
    for device in parse_lsblk(listing.stdout):
        if device.type != "disk" or device.removable or _NOT_A_DISK.match(device.name):
            continue
        nvme = _NVME_NAMESPACE.match(device.name)
        path = f"/dev/{nvme.group(1)}" if nvme else (device.path or f"/dev/{device.name}")
        if path in seen:
            continue  # another namespace of the same NVMe controller
        seen.add(path)
        found = by_name.get(path)
        disks.append(SmartDisk(path, found.type if found else None, device.serial,
                               device.model))
    for member in scanned:  # disks only smartctl sees: members behind a RAID controller
        if member.name not in seen and member.type and "," in member.type:
            disks.append(SmartDisk(member.name, member.type, None, None))
    return disks


def read_disk(host: HostUnderTest, disk: SmartDisk,
              limits: SmartThresholds | None = None) -> DiskReading:
    """`smartctl -x -j` on one disk, parsed and judged (the raw output is evidence)."""
    result = host.run(f"smartctl -x -j {disk.args}", timeout=SMARTCTL_TIMEOUT_S)
    try:
        report = parse_smartctl(result.stdout)
    except ParseError as exc:
        reasons = Reasons()
        reasons.inconclusive(f"{disk.label}: smartctl's output could not be read ({exc}); "
                             f"exit status {result.exit_status}")
        return DiskReading(disk, None, reasons.judgement())
    return DiskReading(disk, report, judge_smartctl(report, limits))


def read_all(host: HostUnderTest, limits: SmartThresholds | None = None) -> list[DiskReading]:
    return [read_disk(host, disk, limits) for disk in smart_disks(host)]


@dataclass(frozen=True)
class SelfTestOutcome:
    disk: SmartDisk
    outcome: str  # passed, failed, not-supported, timed-out, no-result
    detail: str

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "timed-out")


def self_test_status(host: HostUnderTest, disk: SmartDisk) -> SelfTestStatus | None:
    result = host.run(f"smartctl -c -l selftest -j {disk.args}", timeout=SMARTCTL_TIMEOUT_S,
                      attach=False)
    try:
        return parse_self_test_status(result.stdout)
    except ParseError:
        return None


def run_self_tests(host: HostUnderTest, disks: list[SmartDisk], kind: str, timeout_s: float,
                   poll_s: float, limits: SmartThresholds | None = None
                   ) -> list[SelfTestOutcome]:
    """Start a `kind` self-test on every disk at once, await them all with progress and a
    deadline, then read each disk's self-test log for the result.

    A drive reports its progress only when asked, so this polls every `poll_s`; a test
    still running at the deadline is aborted (`smartctl -X`) and counts as failed.
    """
    outcomes: dict[str, SelfTestOutcome] = {}
    running: list[SmartDisk] = []
    for disk in disks:
        before = self_test_status(host, disk)
        if before is not None and before.supported is False:
            outcomes[disk.path] = SelfTestOutcome(disk, "not-supported",
                                                  "the drive has no self-test command")
            continue
        started = host.run(f"smartctl -t {shlex.quote(kind)} -j {disk.args}",
                           timeout=SMARTCTL_TIMEOUT_S)
        if started.exit_status & 0b11:
            outcomes[disk.path] = SelfTestOutcome(
                disk, "not-supported", f"smartctl could not start it (exit status "
                f"{started.exit_status}): {(started.stderr or started.stdout).strip()[-200:]}")
            continue
        running.append(disk)
    progress = host.progress(timeout_s, f"{kind} self-test on {len(running)} disk(s)")
    deadline = time.monotonic() + timeout_s
    while running:
        states = {disk.path: self_test_status(host, disk) for disk in running}
        running = [d for d in running if (s := states[d.path]) is not None and s.running]
        if not running:
            break
        left = [s.remaining_pct for d in running if (s := states[d.path]) is not None
                and s.remaining_pct is not None]
        done_pct = 100.0 - (max(left) if left else 50.0)
        progress.update(done_pct, f"{len(running)} disk(s) still testing")
        if time.monotonic() >= deadline:
            for disk in running:
                host.run(f"smartctl -X {disk.args}", timeout=SMARTCTL_TIMEOUT_S)
                outcomes[disk.path] = SelfTestOutcome(
                    disk, "timed-out", f"the {kind} self-test was still running after "
                    f"{timeout_s:g} s (smart.self_test_timeout_s); aborted it")
            break
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
    progress.update(final=True)
    for disk in disks:
        if disk.path in outcomes:
            continue
        reading = read_disk(host, disk, limits)
        latest = next((e for e in (reading.report.self_tests if reading.report else ())
                       if e.passed is not None), None)
        if latest is None:
            outcomes[disk.path] = SelfTestOutcome(disk, "no-result",
                                                  "the self-test log shows no finished test")
        elif latest.passed:
            outcomes[disk.path] = SelfTestOutcome(disk, "passed", latest.status or "passed")
        else:
            where = f" at LBA {latest.lba}" if latest.lba is not None else ""
            outcomes[disk.path] = SelfTestOutcome(
                disk, "failed", f"{latest.kind or kind}: {latest.status or 'failed'}{where}")
    return [outcomes[disk.path] for disk in disks]
