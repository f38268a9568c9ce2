from __future__ import annotations

from harness.models import (
    CpuInfo,
    DimmInfo,
    DiskInfo,
    ExpectedCpu,
    ExpectedDisk,
    ExpectedGpu,
    ExpectedMemory,
    ExpectedNic,
    ExpectedSpec,
    GpuInfo,
    HardwareInventory,
    NicInfo,
    Severity,
)
from harness.spec import GIB, compare, critical, diff_table_html, diff_table_text

ACTUAL = HardwareInventory(
    bios_version="2.8.2",
    cpu=CpuInfo("Intel(R) Xeon(R) Silver 4210R CPU @ 2.40GHz", 1, 10, 20),
    memory_total_bytes=384 * GIB,
    dimms=tuple(DimmInfo(f"A{i}", 32 * GIB) for i in range(12)),
    disks=(DiskInfo("sda", "S1", "SAMSUNG MZ7LH960", 960_197_124_096),
           DiskInfo("sdb", "S2", "SAMSUNG MZ7LH960", 960_197_124_096),
           DiskInfo("sdc", "USB1", "Cruzer", 16_000_000_000)),
    nics=(NicInfo("eno1", "aa:bb:cc:00:00:01", 1000),),
    gpus=(GpuInfo("NVIDIA GH100 [H100L 94GB]"),),
    psu_count=2,
)


def _by_item(spec: ExpectedSpec) -> dict[str, Severity | None]:
    return {row.item: row.severity for row in compare(spec, ACTUAL)}


def test_a_matching_spec_has_no_finding() -> None:
    spec = ExpectedSpec(
        cpu=ExpectedCpu(model="Xeon Silver 4210R", sockets=1, cores=10, threads=20),
        memory=ExpectedMemory(total_gib=384, dimm_count=12, dimm_size_gib=32),
        disks=(ExpectedDisk("S1", "MZ7LH960", 960), ExpectedDisk("s2")),
        nics=(ExpectedNic("AA:BB:CC:00:00:01", 1000),),
        gpus=(ExpectedGpu("H100L", 1),),
        psu_count=2,
        bios_version="2.8.2",
    )
    rows = compare(spec, ACTUAL)
    assert [r for r in rows if r.severity not in (None, Severity.INFO)] == []
    # the USB stick is not in the spec: reported as info, not a failure
    assert _by_item(spec)["disk USB1"] is Severity.INFO


def test_missing_and_smaller_things_are_critical() -> None:
    spec = ExpectedSpec(
        cpu=ExpectedCpu(sockets=2, threads=40),
        memory=ExpectedMemory(total_gib=512),
        disks=(ExpectedDisk("S1"), ExpectedDisk("S9-MISSING")),
        nics=(ExpectedNic("aa:bb:cc:00:00:02"),),
        gpus=(ExpectedGpu("H100L", 2),),
        psu_count=3,
    )
    items = {r.item for r in critical(compare(spec, ACTUAL))}
    assert items == {"cpu.sockets", "cpu.threads", "memory.total_gib", "disk S9-MISSING",
                     "nic aa:bb:cc:00:00:02", "gpu H100L", "psu_count"}


def test_memory_within_tolerance_passes_and_more_is_a_warning() -> None:
    assert _by_item(ExpectedSpec(memory=ExpectedMemory(total_gib=395, tolerance_pct=5)))[
        "memory.total_gib"] is None
    assert _by_item(ExpectedSpec(memory=ExpectedMemory(total_gib=256)))[
        "memory.total_gib"] is Severity.WARNING


def test_other_cpu_model_is_critical_other_disk_model_a_warning() -> None:
    found = _by_item(ExpectedSpec(cpu=ExpectedCpu(model="EPYC 9454P"),
                                  disks=(ExpectedDisk("S1", model="INTEL SSDSC2KB960G8"),)))
    assert found["cpu.model"] is Severity.CRITICAL
    assert found["disk S1 model"] is Severity.WARNING


def test_slow_link_and_other_bios_are_warnings() -> None:
    found = _by_item(ExpectedSpec(nics=(ExpectedNic("aa:bb:cc:00:00:01", 10000),),
                                  bios_version="2.9.0"))
    assert found["nic aa:bb:cc:00:00:01 speed_mbps"] is Severity.WARNING
    assert found["bios_version"] is Severity.WARNING


def test_unknown_actual_values_are_critical_not_silently_passed() -> None:
    rows = compare(ExpectedSpec(cpu=ExpectedCpu(threads=4), memory=ExpectedMemory(total_gib=8)),
                   HardwareInventory())
    assert {r.item: r.severity for r in rows} == {
        "cpu.threads": Severity.CRITICAL, "memory.total_gib": Severity.CRITICAL}
    assert all(r.actual == "(not found)" for r in rows)


def test_empty_spec_compares_nothing() -> None:
    assert compare(ExpectedSpec(), ACTUAL) == []


def test_tables_show_every_row_and_escape_html() -> None:
    rows = compare(ExpectedSpec(disks=(ExpectedDisk("<script>"),), psu_count=2), ACTUAL)
    html = diff_table_html(rows)
    assert "&lt;script&gt;" in html and "<script>" not in html
    text = diff_table_text(rows)
    assert "psu_count" in text and "critical" in text and "ok" in text


def test_disk_size_is_compared_unrounded_within_one_percent() -> None:
    """A 1 GiB disk is 1.07 GB: rounding it to 1.1 before comparing made it "larger than
    expected"; a 1.1399 GB disk rounded to 1.1 would have been critically small."""
    small = HardwareInventory(disks=(DiskInfo("vda", "V1", "QEMU", GIB),
                                     DiskInfo("vdb", "V2", "QEMU", 1_139_900_000),
                                     DiskInfo("vdc", "V3", "QEMU", 1_000_000_000)))
    rows = {r.item: r for r in compare(ExpectedSpec(disks=(
        ExpectedDisk("V1", size_gb=1.07), ExpectedDisk("V2", size_gb=1.14),
        ExpectedDisk("V3", size_gb=1.07))), small)}
    assert "disk V1 size_gb" not in rows and "disk V2 size_gb" not in rows
    smaller = rows["disk V3 size_gb"]
    assert smaller.severity is Severity.CRITICAL and smaller.actual == "1.0"
