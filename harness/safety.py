"""The four gates in front of every destructive disk test.

Overwriting the wrong disk is the one mistake vet must never make, so a disk is written
only when every gate passes, each checked and reported on its own:

1. mac-allowlisted: the host booted from a MAC its inventory lists and the PXE
   server's allowlist (its rendered dnsmasq.conf) serves;
2. run-token: the token on the host's kernel command line, read now, verifies for this
   run, host and MAC (a host that booted someone else's script is not ours to wipe);
3. wipe-probe: wipefs finds no signature (filesystem, partition table, LVM, MD, ZFS...)
   on the disk or its partitions, unless the operator overrode the probe for that disk;
4. expected-disk: the disk's serial is one of the host's expected disks.

A disk that is not expected is never opened for writing, whatever the other gates say.
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.host import HostUnderTest
from harness.models import PxeConfig
from harness.probes import ParseError
from harness.probes.lsblk import BlockDevice, parse_lsblk
from harness.probes.wipefs import parse_wipefs
from harness.token import TokenError, cmdline_values, key_for, verify_token


class Gate(enum.StrEnum):
    MAC_ALLOWLISTED = "mac-allowlisted"
    RUN_TOKEN = "run-token"
    WIPE_PROBE = "wipe-probe"
    EXPECTED_DISK = "expected-disk"


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    passed: bool
    detail: str
    overridden: bool = False


@dataclass(frozen=True)
class DiskGates:
    """One disk and what each gate said about it."""

    path: str
    serial: str | None
    size_bytes: int | None
    gates: tuple[GateResult, ...]

    @property
    def writable(self) -> bool:
        return all(g.passed for g in self.gates)

    def failed(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]

    def gate(self, gate: Gate) -> GateResult:
        return next(g for g in self.gates if g.gate is gate)

    @property
    def data_found(self) -> bool:
        """An expected disk on which the wipe probe found data: a human must decide."""
        return self.gate(Gate.EXPECTED_DISK).passed and not self.gate(Gate.WIPE_PROBE).passed


def allowlisted_macs(pxe: PxeConfig) -> set[str]:
    """The MACs the PXE server answers: its rendered dnsmasq.conf's dhcp-host lines."""
    conf = Path(pxe.root) / "dnsmasq.conf"
    macs: set[str] = set()
    try:
        text = conf.read_text()
    except OSError:
        return macs
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "dhcp-host":
            macs.update(v.lower() for v in value.split(",") if v.count(":") == 5)
    return macs


def mac_gate(vetted: HostUnderTest) -> GateResult:
    entry = vetted.entry
    booted_mac = vetted.facts.get("netboot", {}).get("mac") or (
        entry.macs[0] if entry.macs else None)
    if entry.pxe is None or booted_mac is None:
        return GateResult(Gate.MAC_ALLOWLISTED, False,
                          f"host {entry.name} was not network-booted by vet (no vet_pxe), so no "
                          "allowlist vouches for it")
    if booted_mac not in entry.macs:
        return GateResult(Gate.MAC_ALLOWLISTED, False,
                          f"it booted from {booted_mac}, which its vet_macs do not list")
    served = allowlisted_macs(entry.pxe)
    if booted_mac not in served:
        return GateResult(Gate.MAC_ALLOWLISTED, False,
                          f"{booted_mac} is not in the PXE server's allowlist "
                          f"({entry.pxe.root}/dnsmasq.conf); re-run vet pxe setup")
    return GateResult(Gate.MAC_ALLOWLISTED, True, f"{booted_mac} is allowlisted")


def token_gate(vetted: HostUnderTest, key: bytes | None = None) -> GateResult:
    entry = vetted.entry
    if entry.pxe is None or not entry.macs:
        return GateResult(Gate.RUN_TOKEN, False,
                          "no run token: the host was not network-booted by vet")
    result = vetted.channel.run("cat /proc/cmdline", 30)
    token = cmdline_values(result.stdout).get("vet.token") if result.ok else None
    if not token:
        return GateResult(Gate.RUN_TOKEN, False, "its kernel command line has no vet.token")
    run_id = booted_by(vetted)
    try:
        verify_token(key if key is not None else key_for(entry.pxe), token,
                     run_id=run_id, host=entry.name, mac=entry.macs[0])
    except TokenError as exc:
        return GateResult(Gate.RUN_TOKEN, False, f"the run token does not verify: {exc}")
    if run_id != vetted.ctx.run_id:
        return GateResult(Gate.RUN_TOKEN, True, f"the run token verifies for run {run_id}, "
                          f"which booted the host and holds it (this is a retry)")
    return GateResult(Gate.RUN_TOKEN, True, f"the run token verifies for run {run_id}")


def booted_by(vetted: HostUnderTest) -> str:
    """The run whose token the host booted with: this run, or for a retry on a held host
    (`vet retry`, --attach-held) the run that booted it and holds it."""
    held_from = vetted.facts.get("netboot", {}).get("held_from")
    return str(held_from) if held_from else vetted.ctx.run_id


def wipe_gate(vetted: HostUnderTest, disk: BlockDevice, overrides: Iterable[str]) -> GateResult:
    """wipefs on the disk and each of its partitions; any signature blocks (or is overridden)."""
    found: list[str] = []
    for dev in (disk, *disk.children):
        if not dev.path:
            continue
        probe = vetted.run(f"wipefs --no-act --json {shlex.quote(dev.path)}", 60)
        if not probe.ok:
            return GateResult(Gate.WIPE_PROBE, False,
                              f"wipefs could not probe {dev.path} (exit {probe.exit_status}): "
                              f"{probe.stderr.strip()[:200]}")
        try:
            signatures = parse_wipefs(probe.stdout)
        except ParseError as exc:
            return GateResult(Gate.WIPE_PROBE, False, f"cannot read wipefs on {dev.path}: {exc}")
        found += [f"{s.type} at {s.offset} on {dev.path}" for s in signatures]
    if disk.children:
        found.append(f"{len(disk.children)} partition(s)")
    if not found:
        return GateResult(Gate.WIPE_PROBE, True, "no signature, no partition")
    what = "; ".join(found[:5])
    if disk.serial and disk.serial in set(overrides):
        return GateResult(Gate.WIPE_PROBE, True, f"found {what}: overridden by the operator "
                                                 "(storage.wipe_probe_override)", overridden=True)
    return GateResult(Gate.WIPE_PROBE, False,
                      f"found {what}: the disk holds data; a human must decide (override per "
                      f"disk with vet_stages: storage: wipe_probe_override: [{disk.serial}])")


def expected_gate(vetted: HostUnderTest, disk: BlockDevice) -> GateResult:
    expected = {d.serial for d in vetted.expected.disks}
    if disk.serial and disk.serial in expected:
        return GateResult(Gate.EXPECTED_DISK, True, f"serial {disk.serial} is expected")
    return GateResult(Gate.EXPECTED_DISK, False,
                      f"serial {disk.serial or '(none)'} is not among the host's expected disks")


def check_disks(vetted: HostUnderTest, overrides: Iterable[str] = (),
                key: bytes | None = None) -> list[DiskGates]:
    """Every disk of the host with all four gates; only expected disks are probed further."""
    listing = vetted.run("lsblk -J -b -O", 60, check=True)
    disks = [d for d in parse_lsblk(listing.stdout)
             if d.type == "disk" and d.path and not d.removable and not d.read_only]
    host_gates = (mac_gate(vetted), token_gate(vetted, key))
    results = []
    for disk in disks:
        assert disk.path is not None
        expected = expected_gate(vetted, disk)
        # A disk that is not expected is never touched, not even probed.
        wipe = (wipe_gate(vetted, disk, overrides) if expected.passed else
                GateResult(Gate.WIPE_PROBE, False, "not probed: the disk is not expected"))
        results.append(DiskGates(disk.path, disk.serial, disk.size_bytes,
                                 (*host_gates, wipe, expected)))
    return results
