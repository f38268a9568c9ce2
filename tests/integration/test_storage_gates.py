"""The four storage safety gates, each alone blocking the destructive run, on a real lab
guest: booted through PXE once, then the storage stage's own destructive test is run
with one gate broken at a time. Each time, the disks' first MiB are checksummed before
and after: nothing may be written. Last, with every gate passing (the wipe probe
overridden for a disk that has a filesystem), the disks are written and verified."""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.host import HostUnderTest
from harness.image import ImageArtifacts
from harness.models import ExpectedDisk, ExpectedSpec, Host
from harness.safety import Gate, check_disks
from tests.fixtures.lab import booted_host, guest, lab_for
from tests.helpers import load_suite

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
              pytest.mark.lab]
NVME, DATA = "T14-NVME0", "T14-DATA0"
STAGES = {"storage": {"mode": "destructive", "write_mib": 8}}


@pytest.fixture(scope="module")
def booted(live_image: ImageArtifacts, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[HostUnderTest]:
    disks = [{"bus": "nvme", "serial": NVME, "size_gib": 0.1},
             {"bus": "virtio", "serial": DATA, "size_gib": 0.1}]
    expected = {"disks": [{"serial": NVME}, {"serial": DATA}]}
    with lab_for([guest("vm-gates", 14, power="qemu", disks=disks, spec=expected)],
                 live_image, STAGES) as lab, \
            booted_host(lab, "vm-gates", tmp_path_factory.mktemp("gates")) as vetted:
        vetted.enter_stage("storage")
        yield vetted


def checksums(host: HostUnderTest) -> dict[str, str]:
    """sha256 of the first 16 MiB of each disk, by serial."""
    out = host.run("for d in $(lsblk -dn -o PATH,TYPE | awk '$2==\"disk\"{print $1}'); do "
                   "printf '%s ' \"$(lsblk -dn -o SERIAL $d)\"; "
                   "head -c 16M $d | sha256sum | cut -c1-16; done", 120, check=True).stdout
    return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)


def blocked(host: HostUnderTest, change: Callable[[Host], Host]) -> str:
    """Run the stage's destructive test with `change` applied to the host's entry; it
    must not pass, and no disk may change. Returns the message it gave."""
    original = host.entry
    host.entry = change(original)
    before = checksums(host)
    try:
        with pytest.raises((pytest.skip.Exception, AssertionError)) as stopped:
            load_suite("storage").test_destructive_write_verify(host)
    finally:
        host.entry = original
    assert checksums(host) == before, "a blocked destructive run wrote to a disk"
    return str(stopped.value)


def only_failed_gate(host: HostUnderTest, change: Callable[[Host], Host]) -> set[Gate]:
    original = host.entry
    host.entry = change(original)
    try:
        results = check_disks(host)
    finally:
        host.entry = original
    return {g.gate for d in results for g in d.failed()}


def test_mac_gate_alone_blocks(booted: HostUnderTest, tmp_path: Path) -> None:
    assert booted.entry.pxe is not None
    other_root = tmp_path / "pxe"
    other_root.mkdir()
    (other_root / "dnsmasq.conf").write_text("dhcp-host=52:54:00:00:00:99,10.0.0.9,someone\n")

    def unlisted(entry: Host) -> Host:
        assert entry.pxe is not None
        return dataclasses.replace(entry, pxe=dataclasses.replace(entry.pxe,
                                                                  root=str(other_root)))

    assert only_failed_gate(booted, unlisted) == {Gate.MAC_ALLOWLISTED}
    message = blocked(booted, unlisted)
    assert "mac-allowlisted" in message and "not in the PXE server's allowlist" in message


def test_token_gate_alone_blocks(booted: HostUnderTest, tmp_path: Path) -> None:
    foreign = tmp_path / "other.key"
    foreign.write_text(secrets.token_hex(32))
    foreign.chmod(0o600)

    def other_key(entry: Host) -> Host:
        assert entry.pxe is not None
        return dataclasses.replace(entry, pxe=dataclasses.replace(
            entry.pxe, token_key_file=str(foreign)))

    assert only_failed_gate(booted, other_key) == {Gate.RUN_TOKEN}
    message = blocked(booted, other_key)
    assert "run-token" in message and "does not verify" in message


def test_expected_disk_gate_alone_blocks(booted: HostUnderTest) -> None:
    def nothing_expected(entry: Host) -> Host:
        return dataclasses.replace(entry, spec=ExpectedSpec(disks=(ExpectedDisk("OTHER-1"),)))

    assert only_failed_gate(booted, nothing_expected) == {Gate.EXPECTED_DISK, Gate.WIPE_PROBE}
    message = blocked(booted, nothing_expected)
    assert "expected-disk" in message and "not probed" in message


def test_wipe_probe_alone_blocks_and_holds_then_override_writes(booted: HostUnderTest) -> None:
    data_disk = booted.run(f"lsblk -dn -o PATH,SERIAL | awk '$2==\"{DATA}\"{{print $1}}'",
                           30, check=True).stdout.strip()
    booted.run(f"mkfs.ext4 -q -F {data_disk}", 120, check=True)
    try:
        assert only_failed_gate(booted, lambda e: e) == {Gate.WIPE_PROBE}
        message = blocked(booted, lambda e: e)
        assert "wipe probe" in message and "ext4" in message
        assert "kept for a human" in message
        # The operator overrides the probe for that disk: now every gate passes.
        before = checksums(booted)
        storage = booted.all_params["storage"]
        storage["wipe_probe_override"] = [DATA]
        try:
            load_suite("storage").test_destructive_write_verify(booted)
        finally:
            storage["wipe_probe_override"] = []
        after = checksums(booted)
        assert after[NVME] != before[NVME] and after[DATA] != before[DATA], \
            "every gate passed but the disks were not written"
        gates = [r for r in check_disks(booted, overrides=[DATA]) if r.serial == DATA]
        assert gates and gates[0].gate(Gate.WIPE_PROBE).passed
    finally:
        booted.run(f"wipefs -a -q {data_disk}", 60)
