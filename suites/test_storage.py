"""Storage (non-destructive): fio writes and verifies a scratch file."""

from __future__ import annotations

import pytest

from harness.host import HostUnderTest
from harness.probes.fio import parse_fio

pytestmark = [pytest.mark.stage, pytest.mark.storage]


def test_fio_verified_scratch_file(host: HostUnderTest) -> None:
    p = host.params
    host.require("fio")
    with host.scratch_path(p["scratch_dir"], "fio.dat") as path:
        result = host.run(
            f"fio --name=vet-verify --filename={path} --size={p['size_mib']}M "
            f"--rw=randwrite --bs={p['block_size']} --iodepth={p['iodepth']} "
            f"--ioengine=libaio --direct=1 --runtime={p['runtime_s']} "
            f"--verify={p['verify']} --do_verify=1 --verify_fatal=1 --verify_state_save=0 "
            f"--output-format=json",
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
