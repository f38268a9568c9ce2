"""Judgement rules and their thresholds, one behaviour per test, on real and modified captures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from harness.judge import (
    EdacThresholds,
    EthtoolThresholds,
    Finding,
    FioThresholds,
    GpuThresholds,
    Iperf3Thresholds,
    Judgement,
    KernelLogThresholds,
    PsuThresholds,
    SmartThresholds,
    Verdict,
    compare_edac,
    compare_smart,
    judge_dmidecode,
    judge_edac,
    judge_ethtool,
    judge_fio,
    judge_gpu,
    judge_iperf3,
    judge_ipmitool,
    judge_kernel_log,
    judge_nvidia_smi,
    judge_smartctl,
    judge_stress_ng,
)
from harness.probes.dmidecode import parse_dmidecode
from harness.probes.edac import parse_edac
from harness.probes.ethtool import parse_ethtool
from harness.probes.fio import parse_fio
from harness.probes.iperf3 import parse_iperf3
from harness.probes.ipmitool import parse_ipmitool
from harness.probes.kernel_log import parse_kernel_log
from harness.probes.nvidia_smi import parse_nvidia_smi
from harness.probes.smartctl import SmartReport, parse_smartctl
from harness.probes.stress_ng import parse_stress_ng
from tests.unit.corpus_paths import corpus_text, local_text

H, W, F = Verdict.HEALTHY, Verdict.WARNING, Verdict.FAILING
DATA = Path(__file__).resolve().parents[1] / "data" / "probes"


def smart(name: str, **changes: object) -> SmartReport:
    """A corpus capture, with top-level or nested keys changed ("a.b.c": value)."""
    document = json.loads(corpus_text("smartctl", name))
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = document
        for key in parents:
            node = node[key]
        node[last] = value
    return parse_smartctl(json.dumps(document))


def probe(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# --- the Judgement type --------------------------------------------------------------------

def test_judgement_orders_reasons_worst_first() -> None:
    judgement = Judgement.of([Finding(H, "note"), Finding(F, "bad"), Finding(W, "meh")])
    assert judgement.verdict is F and judgement.reasons == ("bad", "meh", "note")
    assert Judgement.of([]).verdict is H and Judgement.of([]).reasons == ()


def test_merge_keeps_one_copy_of_a_sentence_at_its_worst() -> None:
    merged = Judgement.merge([Judgement.of([Finding(W, "x"), Finding(H, "y")]),
                              Judgement.of([Finding(F, "x")]),
                              Judgement.of([], inconclusive=True)])
    assert merged.findings == (Finding(F, "x"), Finding(H, "y")) and merged.inconclusive


def test_inconclusive_is_never_healthy() -> None:
    assert Judgement.of([Finding(H, "n")], inconclusive=True).verdict is W


# --- smartctl --------------------------------------------------------------------------------

def test_each_failing_ata_attribute_is_named() -> None:
    wdc = "ata-hdd_wdc-wd140edfz_a_healthy.json"
    table = json.loads(corpus_text("smartctl", wdc))["ata_smart_attributes"]["table"]
    pending = next(i for i, row in enumerate(table) if row["id"] == 197)
    document = json.loads(corpus_text("smartctl", wdc))
    document["ata_smart_attributes"]["table"][pending]["raw"]["value"] = 3
    judgement = judge_smartctl(parse_smartctl(json.dumps(document)))
    assert judgement.verdict is F
    assert "Current_Pending_Sector (attribute 197) raw value 3 is above 0" in judgement.reasons[0]
    assert "/dev/sdb [SAT] (WDC WD140EDFZ-11A0VA0, serial 9RK1XXXX)" in judgement.reasons[0]


def test_ata_limits_are_parameters() -> None:
    report = parse_smartctl(corpus_text("smartctl", "ata-hdd_seagate-st3500418as_realloc304.json"))
    assert judge_smartctl(report).verdict is F
    lenient = SmartThresholds(ata_failing_raw={5: 500, 187: 0, 188: 0, 197: 0, 198: 0})
    assert judge_smartctl(report, lenient).verdict is H
    crc = parse_smartctl(corpus_text("smartctl", "ata-ssd_samsung-840_x_crc108.json"))
    assert judge_smartctl(crc, SmartThresholds(ata_crc_warn_above=200)).verdict is H


def test_strict_mode_fails_grown_defects() -> None:
    report = parse_smartctl(corpus_text(
        "smartctl", "sas_seagate-st4000nm0043_trimmed_grown-defects56.json"))
    assert judge_smartctl(report).verdict is W
    strict = judge_smartctl(report, SmartThresholds(strict=True))
    assert strict.verdict is F and "strict zero-defect policy" in strict.reasons[0]


@pytest.mark.parametrize(("used", "verdict"), [(79, H), (80, W), (99, W), (100, F), (120, F)])
def test_nvme_percentage_used(used: int, verdict: Verdict) -> None:
    report = smart("nvme_micron-7450_healthy.json",
                   nvme_smart_health_information_log__percentage_used=used)
    assert judge_smartctl(report).verdict is verdict


def test_nvme_spare_below_threshold_fails() -> None:
    report = smart("nvme_micron-7450_healthy.json",
                   nvme_smart_health_information_log__available_spare=5)
    judgement = judge_smartctl(report)
    assert judgement.verdict is F and "available spare 5% is below the threshold 10%" in (
        judgement.reasons[0])


def test_error_log_entries_alone_are_not_a_fault() -> None:
    report = smart("nvme_micron-7450_healthy.json",
                   nvme_smart_health_information_log__num_err_log_entries=99999)
    assert judge_smartctl(report).verdict is H


def test_latest_failed_self_test_fails() -> None:
    document = json.loads(corpus_text("smartctl", "ata-hdd_wdc-wd140edfz_a_healthy.json"))
    entry = document["ata_smart_self_test_log"]["standard"]["table"][0]
    entry["status"] = {"value": 121, "string": "Completed: read failure", "passed": False}
    entry["lba"] = 4242
    judgement = judge_smartctl(parse_smartctl(json.dumps(document)))
    assert judgement.verdict is F
    assert "latest self-test failed" in judgement.reasons[0] and "LBA 4242" in (
        judgement.reasons[0])


def test_unreadable_drive_is_inconclusive() -> None:
    for value in (1, 2, 3):
        report = parse_smartctl(json.dumps({"smartctl": {"exit_status": value, "argv": [
            "smartctl", "-x", "-j", "/dev/sdq"]}}))
        judgement = judge_smartctl(report)
        assert judgement.inconclusive and judgement.verdict is W
        assert judgement.reasons[0].startswith("inconclusive: /dev/sdq: smartctl could not read")


SEAGATE = "ata-hdd_seagate-st3500418as_realloc304.json"


def _attribute_raw(name: str, attribute_id: int, raw: int) -> SmartReport:
    document = json.loads(corpus_text("smartctl", name))
    for row in document["ata_smart_attributes"]["table"]:
        if row["id"] == attribute_id:
            row["raw"]["value"] = raw
    return parse_smartctl(json.dumps(document))


def test_compare_smart_growth_of_a_failure_counter_fails() -> None:
    before = parse_smartctl(corpus_text("smartctl", SEAGATE))
    assert compare_smart(before, before).verdict is H
    grown = compare_smart(before, _attribute_raw(SEAGATE, 5, 310))
    assert grown.verdict is F
    assert "Reallocated_Sector_Ct (attribute 5) grew from 304 to 310" in grown.reasons[0]
    crc = compare_smart(before, _attribute_raw(SEAGATE, 199, 4))
    assert crc.verdict is W and "cable" in crc.reasons[0]


def test_compare_smart_nvme_and_scsi() -> None:
    nvme = "nvme_micron-7450_healthy.json"
    before = parse_smartctl(corpus_text("smartctl", nvme))
    after = smart(nvme, nvme_smart_health_information_log__media_errors=2,
                  nvme_smart_health_information_log__critical_warning=4)
    reasons = compare_smart(before, after).reasons
    assert any("media errors grew from 0 to 2" in r for r in reasons)
    assert any("critical warning bits appeared" in r and "reliability degraded" in r
               for r in reasons)
    sas = "sas_seagate-st1200mm0088_a_healthy.json"
    before = parse_smartctl(corpus_text("smartctl", sas))
    after = smart(sas, scsi_grown_defect_list=1)
    assert compare_smart(before, after).verdict is F


def test_compare_smart_of_two_drives_is_inconclusive() -> None:
    before = parse_smartctl(corpus_text("smartctl", SEAGATE))
    other = parse_smartctl(corpus_text("smartctl", "ata-hdd_wdc-wd140edfz_a_healthy.json"))
    assert compare_smart(before, other).inconclusive
    # The same drive (serial) under another name after a reboot is still compared.
    renamed = smart(SEAGATE, device__name="/dev/sdq", device__info_name="/dev/sdq [SAT]",
                    smart_status__passed=False)
    judgement = compare_smart(before, renamed)
    assert not judgement.inconclusive and judgement.verdict is F
    assert judgement.reasons[0].startswith("/dev/sdq [SAT] (ST3500418AS")


# --- nvidia-smi ---------------------------------------------------------------------------------

T4 = "tesla-t4_link-x8-of-x16_q-x.xml"
A10G = "a10g_idle-p8_remapped-rows-clean_q-x_v11.xml"


def gpu_text(name: str, *swaps: tuple[str, str]) -> str:
    text = corpus_text("nvidia-smi", name)
    for old, new in swaps:
        assert old in text
        text = text.replace(old, new, 1)
    return text


@pytest.mark.parametrize(("swap", "verdict", "words"), [
    (("<dram_uncorrectable>0</dram_uncorrectable>",
      "<dram_uncorrectable>2</dram_uncorrectable>"), F, "2 uncorrectable ECC errors (volatile"),
    (("<pending_retirement>No</pending_retirement>",
      "<pending_retirement>Yes</pending_retirement>"), F, "waiting to be retired"),
    (("<clocks_throttle_reason_hw_thermal_slowdown>Not Active",
      "<clocks_throttle_reason_hw_thermal_slowdown>Active"), W, "hw_thermal_slowdown"),
    (("<replay_counter>0</replay_counter>", "<replay_counter>150</replay_counter>"), W,
     "150 PCIe replays"),
    (("<current_ecc>Enabled</current_ecc>", "<current_ecc>Disabled</current_ecc>"), W,
     "ECC is disabled"),
])
def test_gpu_rules(swap: tuple[str, str], verdict: Verdict, words: str) -> None:
    text = gpu_text(T4, swap, ("<current_link_width>8x", "<current_link_width>16x"))
    judgement = judge_nvidia_smi(parse_nvidia_smi(text))
    assert judgement.verdict is verdict and words in judgement.reasons[0]
    assert judgement.reasons[0].startswith("GPU 00000000:00:1E.0 (Tesla T4)")


def test_gpu_remap_failure_fails_and_pending_warns() -> None:
    failed = gpu_text(A10G, ("<remapped_row_failure>No", "<remapped_row_failure>Yes"))
    assert judge_nvidia_smi(parse_nvidia_smi(failed)).verdict is F
    pending = gpu_text(A10G, ("<remapped_row_pending>No", "<remapped_row_pending>Yes"))
    assert judge_nvidia_smi(parse_nvidia_smi(pending)).verdict is W


def test_gpu_throttle_fails_when_the_stage_says_so() -> None:
    text = gpu_text(T4, ("<clocks_throttle_reason_hw_slowdown>Not Active",
                         "<clocks_throttle_reason_hw_slowdown>Active"))
    gpu = parse_nvidia_smi(text).gpus[0]
    assert judge_gpu(gpu, GpuThresholds(throttle_fails=True)).verdict is F


def test_gpu_retired_pages_thresholds() -> None:
    gpu = parse_nvidia_smi(corpus_text("nvidia-smi", T4)).gpus[0]
    assert judge_gpu(replace(gpu, retired_pages_double_bit=3, pcie_width_current=16)).verdict is W
    assert judge_gpu(replace(gpu, retired_pages_single_bit=60)).verdict is F


def test_no_gpu_listed_warns() -> None:
    judgement = judge_nvidia_smi(parse_nvidia_smi("No devices were found\n"))
    assert judgement.verdict is W and "lists no GPU" in judgement.reasons[0]


# --- BMC, SMBIOS -------------------------------------------------------------------------------

def test_ipmitool_psu_conditions() -> None:
    judgement = judge_ipmitool(parse_ipmitool(probe("ipmitool-elist-hpe-psu-failed.txt")))
    assert judgement.verdict is F
    assert judgement.reasons[0] == ("BMC sensor 'Power Supply 1' (entity 10.1): Failure "
                                    "detected: the PSU reports a failure: replace it")
    assert any("Non-Redundant: Sufficient from Redundant" in r for r in judgement.reasons)


def test_ipmitool_expected_psu_count_and_single_psu_redundancy() -> None:
    healthy = parse_ipmitool(probe("ipmitool-elist-dell-healthy.txt"))
    assert judge_ipmitool(healthy).verdict is H
    three = judge_ipmitool(healthy, PsuThresholds(expected_psus=3))
    assert three.verdict is F and "2 PSU(s) present, the spec expects 3" in three.reasons[0]
    lost = parse_ipmitool("PS1 Status | 60h | ok | 10.1 | Presence detected\n"
                          "PS Redundancy | 77h | ok | 7.1 | Redundancy Lost\n")
    assert judge_ipmitool(lost).verdict is W
    assert judge_ipmitool(lost, PsuThresholds(expected_psus=1)).verdict is H


def test_ipmitool_condition_verdicts_are_a_parameter() -> None:
    lost = parse_ipmitool("PS Redundancy | 77h | ok | 7.1 | Redundancy Lost\n")
    verdicts = dict(PsuThresholds().condition_verdicts, **{"redundancy-lost": F})
    assert judge_ipmitool(lost, PsuThresholds(condition_verdicts=verdicts)).verdict is F


def test_ipmitool_unknown_state_is_noted_not_ignored() -> None:
    odd = parse_ipmitool("PSU1 | 60h | ok | 10.1 | Presence detected, Vendor Specific 0x42\n")
    judgement = judge_ipmitool(odd)
    assert judgement.verdict is H
    assert any("'Vendor Specific 0x42' is not in vet's PSU vocabulary" in r
               for r in judgement.reasons)


def test_dmidecode_present_unknown_is_a_known_quirk() -> None:
    judgement = judge_dmidecode(parse_dmidecode(corpus_text(
        "dmidecode", "dell-poweredge-r740_healthy.txt")))
    assert judgement.verdict is H
    assert any("'Present, Unknown'" in r and "not a fault" in r for r in judgement.reasons)


# --- kernel log, EDAC ---------------------------------------------------------------------------

def test_corrected_errors_warn_above_the_threshold() -> None:
    lines = "".join(f"[ {100 + i}.0] nvme 0000:3b:00.0: PCIe Bus Error: severity=Corrected, "
                    "type=Physical Layer, (Receiver ID)\n" for i in range(11))
    log = parse_kernel_log(lines)
    judgement = judge_kernel_log(log)
    assert judgement.verdict is W and judgement.reasons[0].startswith(
        "11 corrected hardware errors logged (warning above 10)")
    assert judge_kernel_log(log, KernelLogThresholds(corrected_warn_above=20)).verdict is H


def test_xid_class_verdicts_and_thermal_are_parameters() -> None:
    log = parse_kernel_log(probe("kernel-errors-dmesg.txt"))
    xid13 = parse_kernel_log("[ 5.0] NVRM: Xid (PCI:0000:41:00): 13, pid=1, name=x, Graphics\n")
    assert judge_kernel_log(xid13).verdict is H
    strict = dict(KernelLogThresholds().xid_class_verdicts, application=W)
    assert judge_kernel_log(xid13, KernelLogThresholds(xid_class_verdicts=strict)).verdict is W
    thermal = parse_kernel_log("[ 5.0] CPU3: Core temperature above threshold, cpu clock "
                               "throttled (total events = 1)\n")
    assert judge_kernel_log(thermal).verdict is W
    assert judge_kernel_log(thermal, KernelLogThresholds(thermal_fails=True)).verdict is F
    assert judge_kernel_log(log).verdict is F


def test_edac_correctable_and_uncorrectable() -> None:
    text = probe("edac-skx-ce.txt")
    counters = parse_edac(text)
    judgement = judge_edac(counters)
    assert judgement.verdict is W
    assert "14 correctable memory errors on CPU_SrcID#0_MC#0_Chan#0_DIMM#0" in judgement.reasons[0]
    assert judge_edac(counters, EdacThresholds(ce_warn_above=20)).verdict is H
    failing = parse_edac(text.replace("mc1/ue_count:0", "mc1/ue_count:1").replace(
        "mc1/dimm3/dimm_ue_count:0", "mc1/dimm3/dimm_ue_count:1"))
    judgement = judge_edac(failing)
    assert judgement.verdict is F
    assert judgement.reasons[0] == ("memory controller mc1: 1 uncorrectable memory errors on "
                                    "CPU_SrcID#0_MC#1_Chan#1_DIMM#0: replace the DIMM(s)")


def test_edac_absent_is_inconclusive() -> None:
    judgement = judge_edac(parse_edac(""))
    assert judgement.inconclusive and "no EDAC memory controller" in judgement.reasons[0]


def test_compare_edac() -> None:
    text = probe("edac-skx-ce.txt")
    before = parse_edac(text)
    assert compare_edac(before, before).verdict is H
    after = parse_edac(text.replace("mc0/ce_count:14", "mc0/ce_count:20").replace(
        "mc0/dimm0/dimm_ce_count:14", "mc0/dimm0/dimm_ce_count:20"))
    grown = compare_edac(before, after)
    assert grown.verdict is W
    assert grown.reasons[0] == ("6 correctable memory errors during the test on "
                                "CPU_SrcID#0_MC#0_Chan#0_DIMM#0")
    ue = parse_edac(text.replace("mc0/ue_count:0", "mc0/ue_count:1"))
    assert compare_edac(before, ue).verdict is F


# --- network, storage, CPU ------------------------------------------------------------------------

def test_ethtool_slow_link_and_expected_speed() -> None:
    slow = parse_ethtool(probe("ethtool-10gbaset-at-1g.txt"))
    judgement = judge_ethtool(slow)
    assert judgement.verdict is W and "negotiated 1000 Mb/s of the 10000 Mb/s" in (
        judgement.reasons[0])
    expected = judge_ethtool(slow, EthtoolThresholds(expected_speed_mbps=10000))
    assert expected.verdict is F
    down = parse_ethtool(probe("ethtool-veth-peer-down.txt"))
    assert judge_ethtool(down).verdict is W
    assert judge_ethtool(down, EthtoolThresholds(expected_speed_mbps=10000)).verdict is F
    half = parse_ethtool("Settings for eth1:\n\tSpeed: 100Mb/s\n\tDuplex: Half\n"
                         "\tLink detected: yes\n")
    assert "half duplex" in judge_ethtool(half).reasons[0]


def test_iperf3_against_the_link_speed() -> None:
    lan = parse_iperf3(corpus_text("iperf3", "lan-1gbe_tcp-1stream-13s_iperf-3.0.11.json"))
    assert judge_iperf3(lan, Iperf3Thresholds(link_speed_bps=1e9)).verdict is H
    ten = judge_iperf3(lan, Iperf3Thresholds(link_speed_bps=10e9))
    assert ten.verdict is F and "below 80% of the 10 Gbit/s link" in ten.reasons[0]
    refused = judge_iperf3(parse_iperf3(local_text("iperf3-refused.json")))
    assert refused.verdict is F and "Connection refused" in refused.reasons[0]


def test_fio_errors_and_performance_floors() -> None:
    qd16 = parse_fio(corpus_text(
        "fio", "hp-dl380g8_h420i_crucial-mx200_randwrite-4k_qd16_nj16.json"))
    assert judge_fio(qd16).verdict is H
    slow = judge_fio(qd16, FioThresholds(max_mean_latency_ms=10))
    assert slow.verdict is F and "mean write latency 38" in slow.reasons[0]
    assert judge_fio(qd16, FioThresholds(min_iops=10000)).verdict is F
    broken = judge_fio(parse_fio(local_text("fio-verify-fail.txt")))
    assert broken.verdict is F and broken.reasons[0].startswith("fio data verification failed")


def test_stress_ng() -> None:
    assert judge_stress_ng(parse_stress_ng(local_text("stress-ng.txt"))).verdict is H
    failed = parse_stress_ng("stress-ng: info:  [1] dispatching hogs: 1 cpu\n"
                             "stress-ng: fail:  [2] cpu: verification failed\n"
                             "stress-ng: info:  [1] unsuccessful run completed in 1.00s\n")
    assert judge_stress_ng(failed).verdict is F
