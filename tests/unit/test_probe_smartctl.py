"""smartctl -j parser: every corpus capture, exit status bits, bad input, fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.judge import judge_smartctl
from harness.probes._common import ParseError
from harness.probes.smartctl import SmartExitStatus, SmartReport, parse_smartctl
from tests.helpers import mutate
from tests.unit.corpus_paths import available_corpus_names, corpus_text

HGST = "ata-hdd_hgst-hus724020ale640_crc12_errlog_exit64.json"
SEAGATE = "ata-hdd_seagate-st3500418as_realloc304.json"
WDC = "ata-hdd_wdc-wd140edfz_a_healthy.json"
INTEL = "ata-ssd_intel-s4510-960g_healthy.json"
S840 = "ata-ssd_samsung-840_x_crc108.json"
S860 = "ata-ssd_samsung-860evo_x_healthy.json"
RAID0 = "megaraid0-sat-hdd_wd4000fyyx_a_healthy.json"
RAID1 = "megaraid1-sat-hdd_wd4000fyyx_a_realloc387.json"
CORSAIR = "nvme_corsair-mp510_a_errlog8382.json"
MICRON = "nvme_micron-7450_healthy.json"
EVO970 = "nvme_samsung-970evo_x_media-errors7.json"
PM1725 = "nvme_samsung-mzwll3t2hajq_critical-warning16_smart-failed.json"
HITACHI_SAS = "sas_hitachi-h109060sesun600g_healthy.json"
ST1200 = "sas_seagate-st1200mm0088_a_healthy.json"
ST4000 = "sas_seagate-st4000nm0043_trimmed_grown-defects56.json"
RAID_VOLUME = "scsi_intel-raid1-volume_no-smart_exit4.json"
ST373 = "scsi_seagate-st373453lc_grown-defects260_uncorrected.json"
JMICRON = "usbjmicron-hdd_hitachi-hds721050_a_smart-failed-realloc.json"
WINDOWS = "windows_open-failed_exit2.json"
CORPUS = [HGST, SEAGATE, WDC, INTEL, S840, S860, RAID0, RAID1, CORSAIR, MICRON, EVO970, PM1725,
          HITACHI_SAS, ST1200, ST4000, RAID_VOLUME, ST373, JMICRON, WINDOWS]

KEYS = ["smartctl", "exit_status", "device", "name", "protocol", "smart_status", "passed",
        "ata_smart_attributes", "table", "id", "raw", "value", "when_failed", "thresh",
        "nvme_smart_health_information_log", "critical_warning", "media_errors",
        "scsi_grown_defect_list", "scsi_error_counter_log", "read", "total_uncorrected_errors",
        "ata_smart_self_test_log", "standard", "status", "messages", "argv", "version"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=6),
    max_leaves=30,
)


def corpus(name: str) -> SmartReport:
    return parse_smartctl(corpus_text("smartctl", name))


@pytest.mark.parametrize("name", CORPUS)
def test_every_corpus_file_parses(name: str) -> None:
    report = corpus(name)
    assert report.smartctl_version is not None or name == ST4000  # upstream-trimmed header
    assert report.kind in ("ata", "nvme", "scsi") or name == WINDOWS


def test_corpus_has_no_unlisted_smartctl_files() -> None:
    assert available_corpus_names("smartctl") == set(CORPUS)


@pytest.mark.parametrize(("value", "bits", "unreadable"), [
    (0, (), False),
    (1, (0,), True),
    (2, (1,), True),
    (4, (2,), False),
    (64, (6,), False),
    (216, (3, 4, 6, 7), False),  # the JMicron Hitachi: failing, pre-fail, error log, self-test
])
def test_exit_status_bits(value: int, bits: tuple[int, ...], unreadable: bool) -> None:
    status = SmartExitStatus(value)
    assert tuple(bit for bit in range(8) if status.bit(bit)) == bits
    assert status.unreadable is unreadable
    assert len(status.meanings()) == len(bits)
    assert status.disk_failing is (3 in bits) and status.command_failed is (2 in bits)
    assert status.self_test_log_has_errors is (7 in bits)


def test_ata_failing_drive_behind_usb_bridge() -> None:
    report = corpus(JMICRON)
    assert report.exit_status == SmartExitStatus(216)
    assert report.smart_passed is False
    assert (report.device_type, report.protocol) == ("usbjmicron", "ATA")
    assert report.label == "/dev/sdc [USB JMicron] (Hitachi HDS721050DLE630, serial MSK423Y20S3HBC)"
    realloc = report.attribute(5)
    assert realloc is not None
    assert (realloc.name, realloc.value, realloc.thresh, realloc.raw) == (
        "Reallocated_Sector_Ct", 1, 5, 1975)
    assert realloc.failing_now and realloc.prefailure is True
    pending = report.attribute(197)
    assert pending is not None and pending.raw == 8 and not pending.failing_now
    assert report.ata_error_count == 56
    assert report.power_on_hours == 65592
    failed = [t for t in report.self_tests if t.passed is False]
    assert failed and failed[0].status == "Completed: read failure"
    assert failed[0].lba == 104870168 and failed[0].kind == "Extended offline"
    assert report.self_tests[0].passed is True  # the newest entry comes first


def test_ata_crc_attribute_and_error_log() -> None:
    report = corpus(HGST)
    assert report.exit_status is not None and report.exit_status.error_log_has_errors
    crc = report.attribute(199)
    assert crc is not None and (crc.name, crc.raw) == ("UDMA_CRC_Error_Count", 12)
    assert report.ata_error_count == 12
    assert report.power_on_hours == 83425
    assert report.rotation_rpm == 7200 and report.capacity_bytes == 2000398934016


def test_megaraid_pass_through_keeps_the_slot_in_the_label() -> None:
    report = corpus(RAID1)
    assert report.device_type == "sat+megaraid,1"
    assert report.label.startswith("/dev/sda [megaraid_disk_01] [SAT] (WD4000FYYX")
    assert report.exit_status is not None and report.exit_status.value == 4
    assert report.exit_status.command_failed and not report.exit_status.unreadable
    realloc = report.attribute(5)
    assert realloc is not None and realloc.raw == 387 and not realloc.failing_now
    assert report.self_tests[0].status == "Aborted by host" and report.self_tests[0].passed is None


def test_nvme_health_log() -> None:
    nvme = corpus(EVO970).nvme
    assert nvme is not None
    assert (nvme.critical_warning, nvme.media_errors, nvme.num_err_log_entries) == (0, 7, 62)
    assert (nvme.available_spare_pct, nvme.available_spare_threshold_pct) == (99, 10)
    assert nvme.percentage_used == 3 and nvme.temperature_c == 35
    assert nvme.critical_warnings == () and not nvme.spare_below_threshold


def test_nvme_critical_warning_bits_are_decoded() -> None:
    report = corpus(PM1725)
    assert report.smart_passed is False
    assert report.nvme is not None and report.nvme.critical_warning == 16
    assert report.nvme.critical_warnings == ("volatile memory backup device failed",)
    assert report.exit_status is not None and report.exit_status.disk_failing


def test_nvme_error_log_entries_alone() -> None:
    nvme = corpus(CORSAIR).nvme
    assert nvme is not None and nvme.num_err_log_entries == 8382 and nvme.media_errors == 0


def test_scsi_grown_defects_and_uncorrected_errors() -> None:
    report = corpus(ST373)
    assert report.kind == "scsi" and report.model_name == "SEAGATE ST373453LC"
    assert report.scsi_grown_defects == 260
    counters = {c.direction: c for c in report.scsi_error_counters}
    assert counters["read"].total_uncorrected_errors == 1
    assert counters["write"].total_uncorrected_errors == 535
    assert counters["read"].gigabytes_processed == pytest.approx(11523.849)


def test_trimmed_fixture_without_smartctl_block() -> None:
    report = corpus(ST4000)
    assert report.exit_status is None and report.argv == ()
    assert report.scsi_grown_defects == 56 and report.smart_passed is True


def test_open_failed_has_no_device_data() -> None:
    report = corpus(WINDOWS)
    assert report.exit_status is not None and report.exit_status.open_failed
    assert report.exit_status.unreadable and not report.has_health_data
    assert report.messages == (
        "Smartctl open device: /dev/sda failed: \\\\.\\PhysicalDrive0: Open failed, Error=5",)
    assert report.label == "/dev/sda"  # from argv: no device block


def test_raid_volume_without_smart_data() -> None:
    report = corpus(RAID_VOLUME)
    assert report.smart_passed is None and not report.has_health_data
    assert report.model_name == "Intel Raid 1 Volume"


def test_synthetic_nvme_and_scsi_self_tests() -> None:
    document = json.loads(corpus_text("smartctl", MICRON))
    document["nvme_self_test_log"] = {"table": [
        {"self_test_code": {"value": 2, "string": "Extended"},
         "self_test_result": {"value": 7, "string": "Completed: failed segments"},
         "power_on_hours": 149},
        {"self_test_code": {"value": 1, "string": "Short"},
         "self_test_result": {"value": 1, "string": "Aborted: Self-test command"},
         "power_on_hours": 148}]}
    document["scsi_self_test_0"] = {"code": {"value": 1, "string": "Background short"},
                                    "result": {"value": 0, "string": "Completed"},
                                    "power_on_time": {"hours": 100}}
    tests = parse_smartctl(json.dumps(document)).self_tests
    assert [(t.kind, t.passed, t.lifetime_hours) for t in tests] == [
        ("Extended", False, 149), ("Short", None, 148), ("Background short", True, 100)]


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty output"),
    ("smartctl 7.3 2022-02-28 r5338\n=== START OF INFORMATION SECTION ===", "invalid JSON"),
    ("[]", "expected a JSON object"),
    ("{}", "neither a 'smartctl' nor a 'device' block"),
    ('{"smartctl": {"version": [7, 3]}}', "without 'exit_status'"),
    ('{"smartctl": {"exit_status": 300}}', "expected 0..255"),
    ('{"smartctl": {"exit_status": 0, "version": ["7"]}}', "list of integers"),
    ('{"device": {}, "smart_status": {"passed": "yes"}}', "expected true/false"),
    ('{"device": {}, "ata_smart_attributes": {"table": [{"name": "x"}]}}', "without an 'id'"),
    ('{"device": {}, "nvme_smart_health_information_log": {}}', "no 'critical_warning'"),
    ('{"device": {}, "scsi_error_counter_log": {"read": {"gigabytes_processed": "x"}}}',
     "expected a number"),
    ('{"device": {"name": 5.5}, "user_capacity": {"bytes": "big"}}', "expected an integer"),
])
def test_malformed_input_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_smartctl(text)
    assert info.value.tool == "smartctl" and str(info.value).startswith("smartctl: ")


def test_truncated_capture_is_a_parse_error() -> None:
    text = corpus_text("smartctl", S860)
    for cut in (3, 500, len(text) // 2, len(text) - 3):
        # Cut inside a number, the decoder names the syntax error rather than the end.
        with pytest.raises(ParseError, match=r"(truncated|invalid) JSON at line"):
            parse_smartctl(text[:cut])


def _check(text: str) -> None:
    try:
        report = parse_smartctl(text)
    except ParseError as error:
        assert error.tool == "smartctl"
        return
    judge_smartctl(report)  # whatever parses must also judge without an exception
    assert isinstance(report.label, str)


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _check(text)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_fuzz_arbitrary_json(value: object) -> None:
    _check(json.dumps(value))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from([JMICRON, EVO970, ST373, S840]))
def test_fuzz_mutated_capture(data: st.DataObject, name: str) -> None:
    document = json.loads(corpus_text("smartctl", name))
    _check(json.dumps(mutate(data, document, JSON_VALUES)))
