"""Every shared-corpus file, parsed and judged, against SOURCES.md's "verdict a human would give".

SOURCES.md speaks in operator words; they map to vet's verdicts as: "healthy" (also "format
sample", "healthy, probably", "healthy media" with nothing to act on) -> healthy; "warn",
"degraded/watch", "investigate", "suspect" -> warning; "failing", "degraded ... fail it for a
fresh deployment", "do not accept for production", "reject for new deployment" -> failing;
"inconclusive" -> the judgement is inconclusive. Where vet's verdict differs, DISAGREE says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness.judge import Judgement, Verdict
from harness.judge.tools import TOOLS
from tests.unit.corpus_paths import available_corpus_names, corpus_text

H, W, F = Verdict.HEALTHY, Verdict.WARNING, Verdict.FAILING
INCONCLUSIVE = "inconclusive"

# (corpus folder, file) -> (vet's verdict, SOURCES.md's words)
EXPECTED: dict[tuple[str, str], tuple[Verdict | str, str]] = {
    ("smartctl", "ata-hdd_wdc-wd140edfz_a_healthy.json"): (H, "healthy"),
    ("smartctl", "ata-ssd_samsung-860evo_x_healthy.json"): (H, "healthy"),
    ("smartctl", "ata-ssd_samsung-840_x_crc108.json"): (W, "healthy media, warn"),
    ("smartctl", "usbjmicron-hdd_hitachi-hds721050_a_smart-failed-realloc.json"): (
        F, "failing: replace now"),
    ("smartctl", "megaraid0-sat-hdd_wd4000fyyx_a_healthy.json"): (H, "healthy"),
    ("smartctl", "megaraid1-sat-hdd_wd4000fyyx_a_realloc387.json"): (
        F, "degraded: ... fail it for a fresh deployment"),
    ("smartctl", "nvme_samsung-970evo_x_media-errors7.json"): (
        F, "degraded/failing: ... Do not accept for production"),
    ("smartctl", "nvme_corsair-mp510_a_errlog8382.json"): (H, "healthy"),
    ("smartctl", "sas_seagate-st4000nm0043_trimmed_grown-defects56.json"): (
        W, "degraded/watch: ... fail under a strict zero-defect policy"),
    ("smartctl", "sas_seagate-st1200mm0088_a_healthy.json"): (H, "healthy"),
    ("smartctl", "scsi_intel-raid1-volume_no-smart_exit4.json"): (INCONCLUSIVE, "inconclusive"),
    ("smartctl", "windows_open-failed_exit2.json"): (INCONCLUSIVE, "inconclusive/error"),
    ("smartctl", "nvme_samsung-mzwll3t2hajq_critical-warning16_smart-failed.json"): (
        F, "failing"),
    ("smartctl", "scsi_seagate-st373453lc_grown-defects260_uncorrected.json"): (F, "failing"),
    ("smartctl", "sas_hitachi-h109060sesun600g_healthy.json"): (H, "healthy"),
    ("smartctl", "ata-hdd_seagate-st3500418as_realloc304.json"): (
        F, "degraded: ... reject for new deployment"),
    ("smartctl", "ata-hdd_hgst-hus724020ale640_crc12_errlog_exit64.json"): (
        W, "healthy media, warn"),
    ("smartctl", "nvme_micron-7450_healthy.json"): (H, "healthy"),
    ("smartctl", "ata-ssd_intel-s4510-960g_healthy.json"): (H, "healthy"),
    ("lshw", "hp-proliant-dl360p-gen8_boot-hardware-failure-fw.json"): (
        W, "investigate/degraded"),
    ("lshw", "intel-nuc7i7bnh_desktop_healthy.json"): (H, "healthy"),
    ("lshw", "fujitsu-lifebook-e782_laptop_german-locale_array-format.json"): (H, "healthy"),
    ("dmidecode", "dell-poweredge-r740_healthy.txt"): (H, "healthy"),
    ("dmidecode", "dell-poweredge-r640_healthy.txt"): (H, "healthy"),
    ("dmidecode", "asrockrack-genoad12-epyc-genoa_healthy.txt"): (H, "healthy"),
    ("dmidecode", "supermicro-sys-2029u-tn24r4t_healthy.txt"): (H, "healthy"),
    ("dmidecode", "hp-proliant-dl380-gen9_psu2-present-critical.txt"): (F, "degraded"),
    ("dmidecode", "hpe-proliant-dl380-gen11_psu2-present-critical.txt"): (F, "degraded"),
    ("dmidecode", "hp-proliant-dl380p-gen8_chassis-psu-critical_fw-detected-hw-failure.txt"): (
        W, "degraded/investigate"),
    ("dmidecode", "lenovo-thinksystem-sr650_chassis-psu-state-warning.txt"): (
        W, "degraded/investigate"),
    ("dmidecode", "supermicro-x8dtu_memory-error-info-bad-read.txt"): (
        W, "suspect/investigate"),
    ("nvidia-smi", "a100-sxm4-80gb_mig-enabled_q-x_v12.xml"): (H, "healthy"),
    ("nvidia-smi", "tesla-t4_link-x8-of-x16_q-x.xml"): (W, "GPU healthy, link warn"),
    ("nvidia-smi", "a10g_idle-p8_remapped-rows-clean_q-x_v11.xml"): (H, "healthy"),
    ("nvidia-smi", "rtx-3080_consumer-no-ecc_q-x_v13.xml"): (H, "healthy"),
    ("nvidia-smi", "quadro-p2000_q-x_v12.xml"): (H, "healthy"),
    ("nvidia-smi", "h100-80gb-hbm3_capture-bundle_q-text_query-gpu-csv_idle-and-load.txt"): (
        H, "healthy"),
    ("nvidia-smi", "h200_capture-bundle_q-text_query-gpu-csv_idle-and-load.txt"): (
        H, "healthy"),
    ("nvidia-smi", "l40s_capture-bundle_q-text_query-gpu-csv_idle-and-load.txt"): (
        H, "healthy"),
    ("nvidia-smi", "tesla-k80-x4_nvidia-smi-default-table.txt"): (H, "healthy"),
    ("lspci", "hp-proliant-dl360p-gen8_lspci-nn.txt"): (H, "healthy (inventory)"),
    ("lspci", "hp-proliant-dl360p-gen8_lspci-vvvnn.txt"): (H, "healthy, probably"),
    ("lspci", "supermicro-as-4125gs-tnrt_2x-h100l_lspci.txt"): (H, "healthy (inventory)"),
    ("lspci", "vmware-vm_ubuntu-20.10_lspci-nnmmv.txt"): (H, "format sample only"),
    ("fio", "hp-dl380g8_h420i_crucial-mx200_randread-4k_qd1_nj1.json"): (H, "healthy"),
    ("fio", "hp-dl380g8_h420i_crucial-mx200_randwrite-4k_qd16_nj16.json"): (
        H, "no errors; performance poor: depends on the performance threshold"),
    ("fio", "hp-dl380g8_mx200x3-mdraid0_randread-4k_qd32_nj8.json"): (H, "healthy"),
    ("fio", "gce-pd_pkb_fio-2.17_with-hist-log.json"): (H, "healthy"),
    ("fio", "pkb_fio-2.1.4_multi-job-sample.json"): (H, "healthy"),
    ("iperf3", "lan-1gbe_tcp-1stream-13s_iperf-3.0.11.json"): (H, "healthy"),
    ("iperf3", "mininet_tcp-4streams-60s_iperf-3.6.json"): (H, "format sample, no fault"),
    ("stress-ng", "pkb_stress-ng_context_metrics-brief.txt"): (H, "healthy"),
    ("kernel-log", "supermicro-as-4125gs-tnrt_2x-h100l_rocky9_boot-dmesg.txt"): (
        W, "hardware healthy, with warnings"),
    ("kernel-log", "gce-vm_debian-5.10_boot-dmesg.txt"): (H, "healthy"),
}

DISAGREE = {
    # SOURCES says "degraded" (PSU 2 failed or lost input, redundancy lost). The brief's rule
    # is "PSU failure or AC lost fail"; SMBIOS "Critical" means exactly that, and a server
    # being vetted with a dead or unplugged PSU is sent back until it is fixed: failing.
    ("dmidecode", "hp-proliant-dl380-gen9_psu2-present-critical.txt"):
        "a per-PSU Critical status is a PSU failure or lost input: failing",
    ("dmidecode", "hpe-proliant-dl380-gen11_psu2-present-critical.txt"):
        "a per-PSU Critical status is a PSU failure or lost input: failing",
}

TOOL_OF_FOLDER = {"kernel-log": "dmesg"}


def _judge(folder: str, name: str) -> Judgement:
    tool = TOOLS[TOOL_OF_FOLDER.get(folder, folder)]
    judge: Callable[[Any], Judgement] = tool.judge
    return judge(tool.parse(corpus_text(folder, name)))


@pytest.mark.parametrize(("folder", "name"), sorted(EXPECTED))
def test_corpus_verdict_agrees_with_sources(folder: str, name: str) -> None:
    expected, _words = EXPECTED[(folder, name)]
    judgement = _judge(folder, name)
    assert judgement.reasons, "every judgement says why"
    if expected == INCONCLUSIVE:
        assert judgement.inconclusive
        assert judgement.reasons[0].startswith("inconclusive: ")
    else:
        assert not judgement.inconclusive
        assert judgement.verdict is expected, judgement.reasons


def test_every_corpus_file_is_in_the_table() -> None:
    folders = {folder for folder, _ in EXPECTED}
    present = {(folder, name) for folder in folders for name in available_corpus_names(folder)}
    assert present <= set(EXPECTED)


def test_disagreements_are_explained() -> None:
    for key in DISAGREE:
        expected, words = EXPECTED[key]
        assert expected is F and words == "degraded"


def test_reasons_name_the_device() -> None:
    checks = {
        ("smartctl", "ata-ssd_samsung-840_x_crc108.json"): "/dev/sda [SAT] (Samsung SSD 840",
        ("smartctl", "megaraid1-sat-hdd_wd4000fyyx_a_realloc387.json"): "[megaraid_disk_01]",
        ("nvidia-smi", "tesla-t4_link-x8-of-x16_q-x.xml"): "GPU 00000000:00:1E.0 (Tesla T4)",
        ("dmidecode", "hp-proliant-dl380-gen9_psu2-present-critical.txt"): "Power Supply 2",
        ("dmidecode", "supermicro-x8dtu_memory-error-info-bad-read.txt"): "P1_DIMM1A",
        ("kernel-log", "supermicro-as-4125gs-tnrt_2x-h100l_rocky9_boot-dmesg.txt"):
            "0000:02:00.0",
    }
    for (folder, name), device in checks.items():
        judgement = _judge(folder, name)
        worst = [f.reason for f in judgement.findings if f.verdict is judgement.verdict]
        assert any(device in reason for reason in worst), (device, worst)


def test_crc_warning_points_at_the_cable_not_the_drive() -> None:
    judgement = _judge("smartctl", "ata-ssd_samsung-840_x_crc108.json")
    (reason,) = judgement.reasons
    assert "cable" in reason and "not the media" in reason and "108" in reason


def test_bit_2_alone_through_raid_pass_through_is_only_a_note() -> None:
    judgement = _judge("smartctl", "megaraid0-sat-hdd_wd4000fyyx_a_healthy.json")
    assert judgement.verdict is H
    assert any("bit 2" in reason and "not a disk fault" in reason
               for reason in judgement.reasons)


def test_idle_gpus_link_downshift_is_a_note_busy_t4_warns() -> None:
    # SOURCES: the T4 (P0, busy) at x8 of x16 warns; the A10G and Quadro P2000 idle at gen 1
    # x8 are healthy: idle GPUs lower their link to save power, so only a note is kept.
    for name in ("a10g_idle-p8_remapped-rows-clean_q-x_v11.xml", "quadro-p2000_q-x_v12.xml"):
        judgement = _judge("nvidia-smi", name)
        assert any("while idle" in reason for reason in judgement.reasons)
    (warning,) = [f for f in _judge("nvidia-smi", "tesla-t4_link-x8-of-x16_q-x.xml").findings
                  if f.verdict is W]
    assert "x8 of gen 3 x16" in warning.reason


def test_supermicro_dmesg_cannot_see_the_1g_link_itself() -> None:
    # SOURCES also notes the 10G port negotiated 1 GbE. dmesg only says "Link is Up, 1000 Mbps":
    # it does not say what the port can do, so the kernel-log judge cannot call it slow. The
    # ethtool judge does (supported 10000baseT vs speed 1000; test_judge.py), and the network
    # stage compares with the spec. The warning here comes from the x4 PCIe slot.
    judgement = _judge("kernel-log", "supermicro-as-4125gs-tnrt_2x-h100l_rocky9_boot-dmesg.txt")
    assert all("PCIe link" in f.reason for f in judgement.findings if f.verdict is W)
