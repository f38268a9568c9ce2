"""The smart, memory and psu stages on a real lab guest: PXE-booted once (in-process, as
tests/integration/test_storage_gates.py does) with an NVMe, a SATA and a virtio disk and an
IPMI BMC, then the stages' own test functions run against it:

- smart passes: NVMe and SATA answer SMART (the SATA disk runs a short self-test, QEMU's
  NVMe has no self-test command), the virtio disk is reported, not failed; the snapshot
  holds both SMART disks;
- memory passes with stress-ng and with memtester (short); EDAC is absent in a VM:
  reported, not failed;
- psu is skipped: the guest has no IPMI device, and the lab's BMC answers IPMI but keeps no
  sensor repository;
- then the NVMe's critical warning is raised at run time through QEMU's QMP
  (`qom-set /machine/peripheral/nvme0 smart_critical_warning 12`): the smart stage fails
  naming the disk, and the before/after comparison catches it.

One test function: the steps share one boot (minutes under TCG) and must run in order."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from qemu.qmp import QMPClient

from harness.host import HostUnderTest
from harness.image import ImageArtifacts
from harness.judge import Verdict
from harness.smart_snapshot import FACT, SmartSnapshot, compare_after
from tests.fixtures.lab import RunningLab, booted_host, guest, lab_for
from tests.helpers import load_suite

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
              pytest.mark.lab]
NVME, SATA, VIRTIO = "T15-NVME0", "T15-SATA0", "T15-VIRT0"
STAGES = {
    "smart": {"self_test": "short", "self_test_timeout_s": 300, "self_test_poll_s": 5},
    "memory": {"duration_s": 3, "workers": 1, "reserve_mib": 128, "max_mib": 32},
}


def raise_nvme_critical_warning(lab: RunningLab, value: int) -> None:
    """qom-set on the guest's first NVMe controller, through the lab's own QMP socket."""
    spec = lab.lab.spec
    socket = str(spec.qmp_socket(spec.guests[0], "lab"))

    async def session() -> None:
        client = QMPClient("vet-test")
        try:
            async with asyncio.timeout(30):
                await client.connect(socket)
                await client.execute("qom-set", {"path": "/machine/peripheral/nvme0",
                                                 "property": "smart_critical_warning",
                                                 "value": value})
        finally:
            await client.disconnect()

    asyncio.run(session())


def test_smart_memory_and_psu_stages_on_a_lab_guest(live_image: ImageArtifacts,
                                                    tmp_path: Path) -> None:
    disks = [{"bus": "nvme", "serial": NVME, "size_gib": 0.1},
             {"bus": "sata", "serial": SATA, "model": "VET LAB SATA", "size_gib": 0.1},
             {"bus": "virtio", "serial": VIRTIO, "size_gib": 0.1}]
    with lab_for([guest("vm-stages", 15, power="ipmi", disks=disks)], live_image,
                 STAGES) as lab, booted_host(lab, "vm-stages", tmp_path) as host:
        check_stages(host, lab)


def check_stages(host: HostUnderTest, lab: RunningLab) -> None:
    smart = load_suite("smart")
    host.enter_stage("smart")
    smart.test_every_disk_reports_healthy(host)
    snapshot = host.facts[FACT]
    assert isinstance(snapshot, SmartSnapshot) and set(snapshot.reports) == {NVME, SATA}
    unreadable = next(p for p in host.evidence.directory.iterdir()
                      if "disks_without_SMART" in p.name).read_text()
    assert f"/dev/vda (serial {VIRTIO})" in unreadable and "Unable to detect" in unreadable
    smart.test_self_test(host)
    [self_tests] = [p for p in host.evidence.directory.iterdir() if "self-tests" in p.name]
    text = self_tests.read_text()
    assert '"outcome": "passed"' in text and '"outcome": "not-supported"' in text

    host.enter_stage("memory")
    memory = load_suite("memory")
    memory.test_memory_stress_with_verification(host)
    host.all_params["memory"].update(tool="memtester", max_mib=16)
    memory.test_memory_stress_with_verification(host)
    records = {r["name"] for r in host.ctx.store.records(host.ctx.run_id, host.name)}
    assert {"stress-ng metrics", "memory error judgement"} <= records

    host.enter_stage("psu")
    with pytest.raises(pytest.skip.Exception) as skipped:
        load_suite("psu").test_power_supplies(host)
    assert "answers IPMI but keeps no sensor data repository" in str(skipped.value)

    # A drive that goes bad while vet runs: its critical warning raised through QMP.
    raise_nvme_critical_warning(lab, 12)
    host.enter_stage("smart")
    judgement = compare_after(host, snapshot)
    assert judgement.verdict is Verdict.FAILING
    failing = [f.reason for f in judgement.findings if f.verdict is Verdict.FAILING]
    assert any(NVME in r and "critical warning bits appeared during the test (0x0c" in r
               for r in failing), failing
    assert not any(SATA in r for r in failing)
    with pytest.raises(AssertionError) as failed:
        smart.test_every_disk_reports_healthy(host)
    message = str(failed.value)
    assert f"/dev/nvme0 (QEMU NVMe Ctrl, serial {NVME}): NVMe critical warning 0x0c" in message
    assert SATA not in message
