"""Kernel log parser: corpus boots, one line per error kind, journal formats, bad input, fuzzing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.judge import judge_kernel_log
from harness.probes._common import ParseError
from harness.probes.kernel_log import KernelLog, Severity, parse_kernel_log
from tests.unit.corpus_paths import available_corpus_names, corpus_text

DATA = Path(__file__).resolve().parents[1] / "data" / "probes"
ERRORS = (DATA / "kernel-errors-dmesg.txt").read_text(encoding="utf-8")
GCE = "gce-vm_debian-5.10_boot-dmesg.txt"
SUPERMICRO = "supermicro-as-4125gs-tnrt_2x-h100l_rocky9_boot-dmesg.txt"


def kinds(log: KernelLog) -> list[tuple[str, Severity, str | None]]:
    return [(f.kind, f.severity, f.device) for f in log.findings]


def test_corpus_has_no_unlisted_kernel_logs() -> None:
    assert available_corpus_names("kernel-log") <= {GCE, SUPERMICRO}


def test_clean_vm_boot_has_no_findings() -> None:
    log = parse_kernel_log(corpus_text("kernel-log", GCE))
    assert log.format == "dmesg" and log.line_count == 470 and log.findings == ()


def test_supermicro_boot_only_the_pcie_bandwidth_warnings() -> None:
    # amd64_edac loading, "MCE: In-kernel MCE decoding enabled", "_OSC ... [AER LTR DPC]",
    # 34 "SATA link down" on empty ports and DOE mailbox failures are not hardware errors.
    log = parse_kernel_log(corpus_text("kernel-log", SUPERMICRO))
    assert kinds(log) == [("pcie-link", Severity.WARNING, "0000:02:00.0"),
                          ("pcie-link", Severity.WARNING, "0000:02:00.1")]
    assert log.findings[0].line == 2592 and log.findings[0].timestamp_s == pytest.approx(5.099666)


def test_one_finding_per_error_line() -> None:
    log = parse_kernel_log(ERRORS)
    assert kinds(log) == [
        ("mce", Severity.ERROR, None),
        ("edac", Severity.CORRECTED, "MC0 CPU_SrcID#0_MC#0_Chan#0_DIMM#0"),
        ("aer", Severity.CORRECTED, "0000:3b:00.0"),
        ("ata", Severity.ERROR, "ata3.00"),
        ("ata", Severity.ERROR, "ata3.00"),  # error: { UNC }
        ("io-error", Severity.ERROR, "sdc"),  # Sense Key : Medium Error
        ("io-error", Severity.ERROR, "sdc"),  # I/O error, dev sdc
        ("xid", Severity.ERROR, "PCI:0000:41:00"),
        ("xid", Severity.INFO, "PCI:0000:41:00"),
        ("thermal", Severity.WARNING, "CPU12"),
    ]
    xid79, xid13 = log.of_kind("xid")
    assert (xid79.code, xid79.xid_class, xid13.code, xid13.xid_class) == (
        79, "hardware", 13, "application")


@pytest.mark.parametrize(("line", "kind", "severity", "device"), [
    ("pcieport 0000:00:1c.5: PCIe Bus Error: severity=Uncorrected (Fatal), type=Transaction "
     "Layer, (Requester ID)", "aer", Severity.FATAL, "0000:00:1c.5"),
    ("pcieport 0000:00:01.1: PCIe Bus Error: severity=Uncorrected (Non-Fatal), type=Transaction "
     "Layer, (Requester ID)", "aer", Severity.ERROR, "0000:00:01.1"),
    ("pcieport 0000:00:03.1: DPC: containment event, status:0x1f01 source:0x0000", "aer",
     Severity.FATAL, "0000:00:03.1"),
    ("EDAC skx MC2: 1 UE memory read error on CPU_SrcID#1_MC#0_Chan#2_DIMM#0 (channel:2)",
     "edac", Severity.ERROR, "MC2 CPU_SrcID#1_MC#0_Chan#2_DIMM#0"),
    ("EDAC MC0: 3 CE on DIMM_A1 (node:0 card:0 module:0 rank:0)", "edac", Severity.CORRECTED,
     "MC0 DIMM_A1"),
    ("mce: [Hardware Error]: CPU 4: Machine Check: 0 Bank 5: be00000000800400", "mce",
     Severity.ERROR, "CPU 4"),
    ("Kernel panic - not syncing: Fatal machine check", "mce", Severity.FATAL, None),
    ("{1}[Hardware Error]:  event severity: fatal", "hardware-error", Severity.FATAL, None),
    ("{2}[Hardware Error]:  event severity: corrected", "hardware-error", Severity.CORRECTED,
     None),
    ("blk_update_request: I/O error, dev sda, sector 2048 op 0x0:(READ) flags 0x0", "io-error",
     Severity.ERROR, "sda"),
    ("critical medium error, dev nvme0n1, sector 10 op 0x0:(READ)", "io-error", Severity.ERROR,
     "nvme0n1"),
    ("Buffer I/O error on dev sdb1, logical block 0, async page read", "io-error",
     Severity.ERROR, "sdb1"),
    ("nvme0n1: I/O Cmd(0x2) @ LBA 0, 8 blocks, I/O Error (sct 0x2 / sc 0x81) DNR", "nvme",
     Severity.ERROR, "nvme0n1"),
    ("nvme nvme1: I/O tag 5 (1005) opcode 0x2 (Read) QID 3 timeout, aborting", "nvme",
     Severity.ERROR, "nvme1"),
    ("nvme nvme0: resetting controller", "nvme", Severity.WARNING, "nvme0"),
    ("ata5.00: error: { ICRC ABRT }", "ata", Severity.WARNING, "ata5.00"),
    ("ata5: hard resetting link", "ata", Severity.WARNING, "ata5"),
    ("pci 0000:3b:00.0: 31.504 Gb/s available PCIe bandwidth, limited by 8.0 GT/s PCIe x4 link "
     "at 0000:3a:00.0 (capable of 63.008 Gb/s with 8.0 GT/s PCIe x8 link)", "pcie-link",
     Severity.WARNING, "0000:3b:00.0"),
    ("NVRM: Xid (PCI:0000:b3:00): 48, pid=1234, name=train, DBE (double bit error)", "xid",
     Severity.ERROR, "PCI:0000:b3:00"),
    ("NVRM: Xid (PCI:0000:b3:00): 63, pid='<unknown>', Row Remapper: New row marked for "
     "remapping", "xid", Severity.WARNING, "PCI:0000:b3:00"),
    ("NVRM: Xid (PCI:0000:b3:00): 999, something new", "xid", Severity.WARNING,
     "PCI:0000:b3:00"),
])
def test_error_lines(line: str, kind: str, severity: Severity, device: str | None) -> None:
    (finding,) = parse_kernel_log(f"[ 1234.567890] {line}\n").findings
    assert (finding.kind, finding.severity, finding.device) == (kind, severity, device)
    assert finding.timestamp_s == pytest.approx(1234.56789) and finding.line == 1


@pytest.mark.parametrize("line", [
    "MCE: In-kernel MCE decoding enabled.",
    "mce: CPU supports 32 MCE banks",
    "acpi PNP0A08:00: _OSC: platform does not support [AER LTR DPC]",
    "pcieport 0000:00:01.1: AER: enabled with IRQ 28",
    "ata1: SATA link down (SStatus 0 SControl 300)",
    "EDAC MC: Ver: 3.0.0",
    "ERST: Error Record Serialization Table (ERST) support is initialized.",
    "CPU12: Core temperature/speed normal",
    "nvme nvme0: 255/0/0 default/read/poll queues",
])
def test_benign_lines(line: str) -> None:
    assert parse_kernel_log(f"[    1.000000] {line}\n").findings == ()


def test_amd_decoder_marks_the_machine_check_corrected() -> None:
    log = parse_kernel_log("[ 10.1] mce: [Hardware Error]: Machine check events logged\n"
                           "[ 10.2] [Hardware Error]: Corrected error, no action required.\n")
    assert kinds(log) == [("mce", Severity.CORRECTED, None)]


def _journal(prefix: str) -> str:
    return "\n".join(re.sub(r"^\[\s*(\S+)\] ", prefix, line) for line in ERRORS.splitlines())


@pytest.mark.parametrize(("text", "fmt"), [
    ("-- Boot 3f2a --\n" + "\n".join(
        re.sub(r"^(\[\s*\S+\]) ", r"\1 node07 kernel: ", line) for line in ERRORS.splitlines()),
     "journal-monotonic"),
    (_journal("Nov 22 07:03:11 node07 kernel: "), "journal"),
    (_journal("2026-11-22T07:03:11+0000 node07 kernel: "), "journal"),
    (_journal("[Sun Nov 22 07:03:11 2026] "), "dmesg"),
    ("\n".join("kern  :err   : " + line for line in ERRORS.splitlines()), "dmesg"),
])
def test_journal_and_dmesg_variants_find_the_same_errors(text: str, fmt: str) -> None:
    log = parse_kernel_log(text)
    assert log.format == fmt
    assert kinds(log) == kinds(parse_kernel_log(ERRORS))


def test_empty_journal_is_clean() -> None:
    log = parse_kernel_log("-- No entries --\n")
    assert log.findings == () and log.format == "journal"


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty output"),
    ("hello\nworld\n", "no line has a dmesg"),
    ("dmesg: read kernel buffer failed: Operation not permitted\n", "no line has a dmesg"),
])
def test_not_a_kernel_log_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_kernel_log(text)
    assert info.value.tool == "dmesg"


def _check(text: str) -> None:
    try:
        log = parse_kernel_log(text)
    except ParseError as error:
        assert error.tool == "dmesg"
        return
    judge_kernel_log(log)


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _check(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(ERRORS.splitlines()) | st.text(max_size=40), max_size=15),
       st.data())
def test_fuzz_shuffled_and_cut_lines(lines: list[str], data: st.DataObject) -> None:
    text = "\n".join(lines)
    cut = data.draw(st.integers(0, len(text)))
    _check(text[:cut])
