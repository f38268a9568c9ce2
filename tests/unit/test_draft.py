from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from harness.collect import merge, parse_raw
from harness.draft import draft_spec_yaml, local_hardware
from harness.inventory import load_inventory
from harness.models import (
    CpuInfo,
    DimmInfo,
    DiskInfo,
    ExpectedDisk,
    ExpectedNic,
    ExpectedSpec,
    GpuInfo,
    HardwareInventory,
    NicInfo,
)
from harness.spec import compare, critical

ROOT = Path(__file__).resolve().parents[2]
GIB = 2**30

BENCH7 = HardwareInventory(
    bios_version="2.6a",
    cpu=CpuInfo("AMD EPYC 7543 32-Core Processor", 2, 64, 128),
    memory_total_bytes=16 * 32 * GIB,
    dimms=tuple(DimmInfo(f"DIMM{i}", 32 * GIB) for i in range(16)),
    disks=(DiskInfo("nvme0n1", "S5UYNA0R100001", "SAMSUNG MZQL2960HCJR", 960_197_124_096),
           DiskInfo("vda", None, None, 21_474_836_480)),
    nics=(NicInfo("eno1", "3c:ec:ef:10:20:01", 25000), NicInfo("eno2", "3c:ec:ef:10:20:11")),
    gpus=(GpuInfo("NVIDIA GH100 [H100L 94GB]"), GpuInfo("NVIDIA GH100 [H100L 94GB]")),
    psu_count=2,
)


def _load(tmp_path: Path, host_vars: str) -> ExpectedSpec:
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    bench7:\n      ansible_connection: local\n")
    (tmp_path / "host_vars" / "bench7.yml").write_text(host_vars)
    [host] = load_inventory(tmp_path)
    return host.spec


def test_draft_loads_back_and_matches_the_machine_it_describes(tmp_path: Path) -> None:
    text = draft_spec_yaml(BENCH7, "bench7")
    assert "# vda: reports no serial, 21.5 GB; vet cannot expect it" in text
    spec = _load(tmp_path, text)
    assert spec.cpu.threads == 128 and spec.memory.dimm_count == 16
    assert spec.disks == (ExpectedDisk("S5UYNA0R100001", "SAMSUNG MZQL2960HCJR", 960.2),)
    assert spec.nics == (ExpectedNic("3c:ec:ef:10:20:01", 25000),
                         ExpectedNic("3c:ec:ef:10:20:11"))
    # a machine vetted against its own draft has no critical difference
    assert critical(compare(spec, BENCH7)) == []


def test_draft_quotes_everything_yaml_would_misread() -> None:
    hw = HardwareInventory(cpu=CpuInfo("1.20", None, None, None), bios_version="1.10",
                           disks=(DiskInfo("sda", "0012345", "yes", None),),
                           nics=(NicInfo("eth0", "52:54:00:12:34:56"),))
    data = yaml.safe_load(draft_spec_yaml(hw))["vet_spec"]
    assert data["cpu"]["model"] == "1.20"
    assert data["disks"] == [{"serial": "0012345", "model": "yes"}]
    assert data["nics"] == [{"mac": "52:54:00:12:34:56"}]
    assert data["bios_version"] == "1.10"


def test_draft_of_nothing_is_an_empty_spec() -> None:
    assert yaml.safe_load(draft_spec_yaml(HardwareInventory())) == {"vet_spec": {}}


def test_draft_from_captured_outputs_of_a_real_server() -> None:
    corpus = ROOT / "tests" / "data" / "corpus" / "dmidecode" / "dell-poweredge-r740_healthy.txt"
    hw = merge(parse_raw({"dmidecode": corpus.read_text()}))
    data = yaml.safe_load(draft_spec_yaml(hw))["vet_spec"]
    assert data["memory"] == {"total_gib": 384.0, "tolerance_pct": 5, "dimm_count": 12,
                              "dimm_size_gib": 32.0}
    assert data["psu_count"] == 2
    assert data["bios_version"] == "2.8.2"


@pytest.mark.skipif(shutil.which("lshw") is None or os.geteuid() != 0,
                    reason="needs lshw and root, as the inventory stage does")
def test_this_machine_drafts_a_spec_it_then_matches(tmp_path: Path) -> None:
    hw = local_hardware()
    spec = _load(tmp_path, draft_spec_yaml(hw, "bench7"))
    assert spec.cpu.threads == os.cpu_count()
    assert critical(compare(spec, hw)) == []
