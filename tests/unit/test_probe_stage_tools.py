"""The small parsers the stages added: smartctl's scan and self-test progress, temperature
samples, /proc/meminfo, iproute2's JSON, gpu_burn's result; the sampler's command line.
Real captures from a QEMU lab guest (tests/data/probes/README.md) and hand-written edge
cases; bad input raises ParseError only (hypothesis)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.judge import Verdict, compare_smart, judge_smartctl
from harness.probes import ParseError
from harness.probes.gpu_burn import parse_gpu_burn
from harness.probes.iproute import parse_ip_link, parse_route_get
from harness.probes.meminfo import parse_meminfo
from harness.probes.smartctl import parse_smartctl
from harness.probes.smartctl_scan import parse_smartctl_scan
from harness.probes.smartctl_selftest import parse_self_test_status
from harness.probes.thermal import THERMAL_COMMAND, parse_thermal
from harness.sampling import sampled

DATA = Path(__file__).resolve().parents[1] / "data" / "probes"


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def smartctl_doc(**blocks: Any) -> str:
    return json.dumps({"smartctl": {"exit_status": 0}, **blocks})


# ----------------------------------------------------------------------------- smartctl


def test_scan_of_a_qemu_guest_names_the_types() -> None:
    devices = parse_smartctl_scan(read("smartctl-qemu-scan-open.json"))
    assert [(d.name, d.type, d.protocol) for d in devices] == [
        ("/dev/sda", "sat", "ATA"), ("/dev/nvme0", "nvme", "NVMe")]
    assert parse_smartctl_scan(smartctl_doc()) == []  # nothing found: no devices list


def test_scan_lists_raid_members_and_open_errors() -> None:
    text = smartctl_doc(devices=[
        {"name": "/dev/bus/0", "info_name": "/dev/bus/0 [megaraid_disk_03]",
         "type": "megaraid,3", "protocol": "SCSI"},
        {"name": "/dev/sdb", "type": "scsi", "open_error": "Permission denied"}])
    member, denied = parse_smartctl_scan(text)
    assert (member.name, member.type) == ("/dev/bus/0", "megaraid,3")
    assert denied.open_error == "Permission denied"


def test_self_test_status_of_qemu_drives() -> None:
    nvme = parse_self_test_status(read("smartctl-qemu-selftest-nvme.json"))
    assert (nvme.supported, nvme.running) == (False, False)  # QEMU's NVMe has no DST command
    sata = parse_self_test_status(read("smartctl-qemu-selftest-sata.json"))
    assert (sata.supported, sata.running, sata.remaining_pct) == (True, False, None)


def test_self_tests_in_progress() -> None:
    ata = parse_self_test_status(smartctl_doc(ata_smart_data={
        "capabilities": {"self_tests_supported": True},
        "self_test": {"status": {"value": 249, "string": "in progress, 90% of test remaining"}}}))
    assert (ata.running, ata.remaining_pct) == (True, 90)
    nvme = parse_self_test_status(smartctl_doc(
        device={"protocol": "NVMe"},
        nvme_self_test_log={"current_self_test_operation": {"value": 1},
                            "current_self_test_completion_percent": 30}))
    assert (nvme.supported, nvme.running, nvme.remaining_pct) == (True, True, 70)
    scsi = parse_self_test_status(smartctl_doc(
        device={"protocol": "SCSI"}, scsi_self_test_0={"result": {"value": 15}}))
    assert scsi.running


def test_qemu_drive_reports_are_judged_as_an_operator_would() -> None:
    healthy = parse_smartctl(read("smartctl-qemu-nvme-healthy.json"))
    critical = parse_smartctl(read("smartctl-qemu-nvme-critical12.json"))
    assert judge_smartctl(healthy).verdict is Verdict.HEALTHY
    failing = judge_smartctl(critical)
    assert failing.verdict is Verdict.FAILING
    assert any("NVMe critical warning 0x0c" in r for r in failing.reasons)
    grown = compare_smart(healthy, critical)
    assert grown.verdict is Verdict.FAILING and "appeared during the test" in grown.reasons[0]
    # QEMU's SATA disk: exit status 4 (a SMART command failed) alone is not a disk fault.
    sata = judge_smartctl(parse_smartctl(read("smartctl-qemu-sata.json")))
    assert sata.verdict is Verdict.HEALTHY


# ----------------------------------------------------------------------------- thermal


def test_thermal_samples_over_time() -> None:
    text = ("1700000000|thermal:x86_pkg_temp|41000\n"
            "1700000000|hwmon:coretemp:Package id 0|41000\n"
            "1700000000|hwmon:coretemp:Core 0|39000\n"
            "1700000005|thermal:x86_pkg_temp|78500\n"
            "1700000005|hwmon:coretemp:Core 0|-273150\n")  # a disconnected sensor's nonsense
    samples = parse_thermal(text)
    assert samples.available and samples.samples == 2
    package = next(s for s in samples.series if s.sensor == "thermal:x86_pkg_temp")
    assert (package.first_c, package.last_c, package.max_c) == (41.0, 78.5, 78.5)
    core = next(s for s in samples.series if s.sensor == "hwmon:coretemp:Core 0")
    assert core.readings == ((1700000000, 39.0),)
    assert samples.hottest is package


def test_no_sensor_is_a_valid_empty_result_and_garbage_is_not() -> None:
    assert not parse_thermal("").available
    with pytest.raises(ParseError, match="line 1: expected EPOCH"):
        parse_thermal("cat: /sys/class/thermal/thermal_zone0/temp: No such device\n")


def test_thermal_command_uses_only_sysfs_and_posix_sh() -> None:
    assert "/sys/class/thermal/thermal_zone*" in THERMAL_COMMAND
    assert "/sys/class/hwmon/hwmon*/temp*_input" in THERMAL_COMMAND
    assert "sensors" not in THERMAL_COMMAND.replace("sensor", "")


# ----------------------------------------------------------------------------- meminfo, ip


def test_meminfo_of_a_guest() -> None:
    info = parse_meminfo(read("meminfo-qemu.txt"))
    assert info["MemAvailable"] < info["MemTotal"] < 1024**3
    assert info["MemTotal"] % 1024 == 0  # kB turned into bytes
    assert "HugePages_Total" in info  # a count, kept as it is
    with pytest.raises(ParseError, match="no MemTotal"):
        parse_meminfo("MemFree: 1 kB\n")


def test_ip_link_and_route_of_a_guest() -> None:
    links = parse_ip_link(read("ip-link-qemu.json"))
    assert list(links.values()) == ["enp0s1"]  # lo's 00:00:00:00:00:00 is not a MAC
    assert parse_route_get(read("ip-route-get-qemu.json")) == "enp0s1"
    assert parse_route_get("[]") is None


def test_a_bond_member_is_found_by_its_own_mac() -> None:
    text = json.dumps([{"ifname": "eno1", "address": "aa:bb:cc:00:00:01",
                        "permaddr": "AA:BB:CC:00:00:02"}])
    assert parse_ip_link(text) == {"aa:bb:cc:00:00:02": "eno1", "aa:bb:cc:00:00:01": "eno1"}


# ----------------------------------------------------------------------------- gpu_burn


def test_gpu_burn_results() -> None:
    result = parse_gpu_burn("100.0%  proc'd: 1200 (14000 Gflop/s)   errors: 0   temps: 61 C\n"
                            "Tested 2 GPUs:\n\tGPU 0: OK\n\tGPU 1: FAULTY\n")
    assert result.verdicts == ((0, True), (1, False)) and result.faulty == (1,)
    with pytest.raises(ParseError, match=r"no 'GPU N: OK\|FAULTY' result line"):
        parse_gpu_burn("Killed\n")


def test_sampler_command_keeps_the_exit_status_and_samples_at_the_end() -> None:
    command = sampled("stress-ng --cpu 1", "date", 0.2, "/tmp/x y")
    assert "sleep 1;" in command  # at most one sample a second
    assert "'/tmp/x y'" in command and command.endswith("exit $vet_rc )")
    assert "\nvet_rc=$?" in command  # the status of the command, whatever it ends with


# ----------------------------------------------------------------------------- fuzzing

PARSERS: list[Callable[[str], object]] = [
    parse_smartctl_scan, parse_self_test_status, parse_thermal, parse_meminfo, parse_ip_link,
    parse_route_get, parse_gpu_burn]


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@given(text=st.one_of(st.text(max_size=300), st.sampled_from([
    read("smartctl-qemu-scan-open.json")[:200], read("smartctl-qemu-selftest-sata.json")[:500],
    read("ip-link-qemu.json")[:100], "[{}]", '{"smartctl": {}, "devices": [1]}',
    '{"smartctl": {}, "ata_smart_data": {"self_test": {"status": {"value": "x"}}}}'])))
def test_bad_input_raises_parse_error_only(parser: Callable[[str], object], text: str) -> None:
    with contextlib.suppress(ParseError):  # any other exception fails the test
        parser(text)
