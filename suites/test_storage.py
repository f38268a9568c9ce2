"""Storage: fio writes and verifies a scratch file; reads the start of every disk
(read-only) to find sectors the disk can no longer return; and, only in destructive mode
and behind four safety gates (harness/safety.py), writes and verifies the expected disks."""

from __future__ import annotations

import pytest

from harness.host import HostUnderTest
from harness.plots import series_step_s
from harness.probes.fio import parse_fio
from harness.probes.lsblk import parse_lsblk
from harness.safety import Gate, check_disks
from harness.storage_run import disk_fio, had_errors

pytestmark = [pytest.mark.stage, pytest.mark.storage]


#: Filesystems held in memory: a scratch file there exercises RAM, not a disk.
RAM_FILESYSTEMS = ("tmpfs", "ramfs")


def _backing_filesystem(host: HostUnderTest, directory: str) -> str:
    """The filesystem type that really holds `directory` (an overlay's upper layer)."""
    found = host.run(f"findmnt -n -o FSTYPE,OPTIONS -T {directory}", attach=False)
    fstype, _, options = found.stdout.strip().partition(" ")
    if fstype == "overlay":
        upper = next((o.split("=", 1)[1] for o in options.split(",")
                      if o.startswith("upperdir=")), None)
        if upper:
            return host.run(f"stat -f -c %T {upper}", attach=False).stdout.strip()
    return fstype


def test_fio_verified_scratch_file(host: HostUnderTest) -> None:
    p = host.params
    host.require("fio")
    backing = _backing_filesystem(host, p["scratch_dir"])
    if backing in RAM_FILESYSTEMS:
        pytest.skip(f"scratch_dir {p['scratch_dir']} is on {backing} (in memory, as in the "
                    "live image): a scratch file there would test RAM, not a disk; the read "
                    "scan reads the disks")
    with host.scratch_path(p["scratch_dir"], "fio.dat") as path:
        result = host.run(
            f"fio --name=vet-verify --filename={path} --size={p['size_mib']}M "
            f"--rw=randwrite --bs={p['block_size']} --iodepth={p['iodepth']} "
            f"--ioengine=libaio --direct=1 --runtime={p['runtime_s']} "
            f"--verify={p['verify']} --do_verify=1 --verify_fatal=1 --verify_state_save=0 "
            f"--status-interval={series_step_s(p['runtime_s'])} --output-format=json",
            timeout=p["runtime_s"] * 4 + 120,
        )
    fio = parse_fio(result.stdout)
    host.record("fio result", fio)
    job = fio.jobs[0]
    if job.write is not None:
        host.measure("write_bw", job.write.bw_bytes_per_s, "B/s")
        host.measure("write_iops", job.write.iops, "IOPS")
    if job.read is not None:
        host.measure("verify_read_bw", job.read.bw_bytes_per_s, "B/s")

    assert not fio.verify_errors, "data verification failed: " + "; ".join(fio.verify_errors[:3])
    assert fio.total_errors == 0, f"fio reported I/O errors (errno {job.error})"
    assert result.exit_status == 0, f"fio exited {result.exit_status}: {result.stderr[-300:]}"
    assert job.write is not None and job.write.io_bytes > 0, "fio wrote nothing"


def test_every_disk_reads_back(host: HostUnderTest) -> None:
    scan_mib = int(host.params.get("read_scan_mib") or 0)
    if scan_mib <= 0:
        pytest.skip("read scan off (storage.read_scan_mib is 0 in this profile)")
    host.require("fio")
    host.require("lsblk", "util-linux")
    listing = host.run("lsblk -J -b -O", check=True)
    disks = [d for d in parse_lsblk(listing.stdout)
             if d.type == "disk" and not d.removable and d.path and d.size_bytes]
    assert disks, "lsblk shows no disks to read"
    failures = []
    for disk in disks:
        assert disk.path is not None and disk.size_bytes is not None
        size_mib = min(scan_mib, disk.size_bytes // 2**20)
        result = host.run(
            f"fio --name=vet-read-{disk.name} --filename={disk.path} --readonly --rw=read "
            f"--bs=1M --size={size_mib}M --ioengine=libaio --direct=1 --iodepth=4 "
            f"--output-format=json", timeout=max(120, size_mib // 5))
        fio = disk_fio(host, result, f"{disk.path} ({disk.serial or 'no serial'})",
                       record_as=f"read scan {disk.name}")
        if isinstance(fio, str):
            failures.append(fio)
            continue
        job = fio.jobs[0]
        if job.read is not None:
            host.measure(f"read_scan_bw_{disk.name}", job.read.bw_bytes_per_s, "B/s")
        if had_errors(fio, result):
            failures.append(f"{disk.path} ({disk.serial or 'no serial'}): read error within "
                            f"the first {size_mib} MiB (errno {job.error})")
    assert not failures, "disk read scan failed: " + "; ".join(failures)


def test_destructive_write_verify(host: HostUnderTest) -> None:
    """Overwrite and verify each expected disk, only where all four safety gates pass."""
    p = host.params
    if p.get("mode") != "destructive":
        pytest.skip(f"storage.mode is {p.get('mode')!r}: the disks are not written (set "
                    "storage.mode: destructive for hosts whose disks may be wiped)")
    host.require("fio")
    host.require("wipefs", "util-linux")
    disks = check_disks(host, overrides=p.get("wipe_probe_override") or ())
    host.record("storage gates", disks)
    held = [d for d in disks if d.data_found]
    assert not held, "wipe probe: " + "; ".join(
        f"{d.path} ({d.serial}): {d.gate(Gate.WIPE_PROBE).detail}" for d in held) + \
        " - nothing was written; the host is kept for a human to decide"
    targets = [d for d in disks if d.writable]
    if not targets:
        blocked = "; ".join(f"{d.path} ({d.serial or 'no serial'}): "
                            + ", ".join(f"{g.gate} ({g.detail})" for g in d.failed())
                            for d in disks)
        pytest.skip(f"no disk passed every safety gate, nothing written: {blocked}")
    failures = []
    for disk in targets:
        size = disk.size_bytes or 0
        write_mib = int(p.get("write_mib") or 0)
        size_mib = min(write_mib, size // 2**20) if write_mib else size // 2**20
        name = disk.path.rsplit("/", 1)[-1]
        with host.ticking(None, f"write-verify {disk.path} ({disk.serial}), {size_mib} MiB"):
            result = host.run(
                f"fio --name=vet-write-{name} --filename={disk.path} --rw=write --bs=1M "
                f"--size={size_mib}M --ioengine=libaio --direct=1 --iodepth=8 "
                f"--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 "
                f"--output-format=json", timeout=max(300, size_mib // 2))
        fio = disk_fio(host, result, f"{disk.path} ({disk.serial})",
                       record_as=f"write-verify {name}")
        if isinstance(fio, str):
            failures.append(fio)
            continue
        job = fio.jobs[0]
        if job.write is not None:
            host.measure(f"write_bw_{name}", job.write.bw_bytes_per_s, "B/s")
            host.measure(f"write_iops_{name}", job.write.iops, "IOPS")
        if had_errors(fio, result):
            failures.append(f"{disk.path} ({disk.serial}): "
                            + ("verification failed" if fio.verify_errors else
                               f"I/O error (errno {job.error})")
                            + f" in the first {size_mib} MiB")
    assert not failures, "write-verify failed: " + "; ".join(failures)
