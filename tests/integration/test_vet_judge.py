"""`vet judge TOOL FILE` as a real process: JSON on stdout, one exit status per verdict.

0 healthy, 1 warning, 2 failing, 3 cannot judge (unparseable input, unreadable file, unknown
tool, missing argument, inconclusive judgement); never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.judge.tools import TOOLS
from tests.unit.corpus_paths import corpus_file

TESTS = Path(__file__).resolve().parents[1]
PROBES = TESTS / "data" / "probes"
LOCAL = TESTS / "data" / "local"


def vet_judge(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "judge", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def judged(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


# One file per tool, each exit status 0, 1 and 2 at least once.
CASES: list[tuple[str, Path | tuple[str, str], int]] = [
    ("smartctl", ("smartctl", "ata-hdd_wdc-wd140edfz_a_healthy.json"), 0),
    ("smartctl", ("smartctl", "ata-ssd_samsung-840_x_crc108.json"), 1),
    ("smartctl", ("smartctl", "nvme_samsung-970evo_x_media-errors7.json"), 2),
    ("nvidia-smi", ("nvidia-smi", "tesla-t4_link-x8-of-x16_q-x.xml"), 1),
    ("nvidia-smi", ("nvidia-smi", "tesla-k80-x4_nvidia-smi-default-table.txt"), 0),
    ("ipmitool", PROBES / "ipmitool-sim-sdr-elist.txt", 2),
    ("ipmitool", PROBES / "ipmitool-elist-dell-healthy.txt", 0),
    ("dmidecode", ("dmidecode", "hp-proliant-dl380-gen9_psu2-present-critical.txt"), 2),
    ("dmidecode", ("dmidecode", "lenovo-thinksystem-sr650_chassis-psu-state-warning.txt"), 1),
    ("lshw", LOCAL / "lshw.json", 0),
    ("fio", LOCAL / "fio-verify-fail.txt", 2),
    ("iperf3", ("iperf3", "lan-1gbe_tcp-1stream-13s_iperf-3.0.11.json"), 0),
    ("dmesg", PROBES / "kernel-errors-dmesg.txt", 2),
    ("dmesg", ("kernel-log", "gce-vm_debian-5.10_boot-dmesg.txt"), 0),
    ("ethtool", PROBES / "ethtool-10gbaset-at-1g.txt", 1),
    ("ethtool", PROBES / "ethtool-S-veth.txt", 0),
    ("edac", PROBES / "edac-skx-ce.txt", 1),
    ("stress-ng", LOCAL / "stress-ng.yaml", 0),
    ("stress-ng", ("stress-ng", "pkb_stress-ng_context_metrics-brief.txt"), 0),
    ("lspci", LOCAL / "lspci.txt", 0),
    ("lspci", LOCAL / "lspci-nn.txt", 0),
    ("lsblk", LOCAL / "lsblk.json", 0),
]


def _path(where: Path | tuple[str, str]) -> Path:
    return where if isinstance(where, Path) else corpus_file(*where)


def test_every_tool_has_a_case() -> None:
    assert {tool for tool, _, _ in CASES} == set(TOOLS)
    assert {status for _, _, status in CASES} == {0, 1, 2}


@pytest.mark.parametrize(("tool", "where", "status"), CASES,
                         ids=[f"{t}-{s}-{_path(w).name}" for t, w, s in CASES])
def test_exit_status_is_the_verdict(tool: str, where: Path | tuple[str, str], status: int) -> None:
    path = _path(where)
    result = vet_judge(tool, str(path))
    assert result.returncode == status, result.stderr
    document = judged(result)
    assert (document["tool"], document["file"]) == (tool, str(path))
    assert document["verdict"] == ["healthy", "warning", "failing"][status]
    assert document["inconclusive"] is False
    assert document["reasons"] and document["reasons"] == [
        f["reason"] for f in document["findings"]]
    assert isinstance(document["record"], dict | list)


def test_record_is_the_parsed_record() -> None:
    result = vet_judge("smartctl", str(corpus_file("smartctl",
                                                   "megaraid1-sat-hdd_wd4000fyyx_a_realloc387.json")))
    record = judged(result)["record"]
    assert record["device_type"] == "sat+megaraid,1"
    assert record["exit_status"] == {
        "value": 4, "bits": ["a SMART or other command to the device failed"]}
    realloc = next(a for a in record["ata_attributes"] if a["id"] == 5)
    assert realloc["raw"] == 387


def test_stdin() -> None:
    text = (PROBES / "kernel-errors-dmesg.txt").read_text()
    result = vet_judge("dmesg", "-", stdin=text)
    assert result.returncode == 2
    document = judged(result)
    assert document["file"] == "-" and document["record"]["format"] == "dmesg"
    assert document["reasons"][0].startswith("machine check (MCE)")


def test_inconclusive_smartctl_exits_3_with_the_json() -> None:
    result = vet_judge("smartctl", str(corpus_file("smartctl", "windows_open-failed_exit2.json")))
    assert result.returncode == 3
    document = judged(result)
    assert document["inconclusive"] is True
    assert document["reasons"][0].startswith("inconclusive: /dev/sda: smartctl could not read")
    assert result.stderr.startswith("vet judge: inconclusive: /dev/sda")


@pytest.mark.parametrize(("args", "stderr"), [
    (("smartctl", str(LOCAL / "dmidecode.txt")),
     "is not readable as smartctl output (smartctl -x -j DEVICE (or -a -j)): smartctl: "),
    (("nvidia-smi", str(LOCAL / "fio.json")), "nvidia-smi: neither XML"),
    (("bogus", str(LOCAL / "fio.json")), "unknown tool 'bogus'; the tools are:\n  smartctl"),
    (("smartctl",), "usage: vet judge TOOL FILE"),
    ((), "usage: vet judge TOOL FILE"),
    (("fio", "/nonexistent/fio.json"), "cannot read /nonexistent/fio.json: No such file"),
])
def test_cannot_judge_exits_3_without_a_traceback(args: tuple[str, ...], stderr: str) -> None:
    result = vet_judge(*args)
    assert result.returncode == 3
    assert result.stdout == ""
    assert stderr in result.stderr and "Traceback" not in result.stderr
