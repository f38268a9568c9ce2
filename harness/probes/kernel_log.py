"""Kernel log text -> KernelLog: the hardware errors in `dmesg` or `journalctl -k` output.

Read formats: `dmesg` ("[   5.097489] msg"), `dmesg -T` ("[Sun Nov 22 07:03:11 2026] msg"),
`dmesg -x` ("kern  :err   : [...] msg"), `journalctl -k -o short-monotonic`
("[   5.097489] host kernel: msg") and plain `journalctl -k` ("Nov 22 07:03:11 host kernel:
msg"). Journal banners ("-- Boot ... --", "-- No entries --") are skipped, so an empty journal
is a valid, clean log. Text where no line has one of these prefixes is not a kernel log.

What counts as a hardware error is the RULES table below: one regular expression per known
kernel message, each with a kind (mce, hardware-error, edac, aer, pcie-link, io-error, nvme,
ata, xid, thermal), a severity and where the device name is. Messages that look alarming but
are not errors ("MCE: In-kernel MCE decoding enabled", "_OSC: platform does not support
[AER ...]", "SATA link down" on an empty port) match no rule. NVIDIA XID codes are classified
by XID_CLASSES (NVIDIA's XID catalogue): an application fault is not a hardware fault.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from harness.probes._common import fail, small_int

TOOL = "dmesg"


class Severity(StrEnum):
    """How bad one logged event is; `error` = not corrected (or not known to be)."""

    INFO = "info"
    CORRECTED = "corrected"
    WARNING = "warning"
    ERROR = "error"
    FATAL = "fatal"


# XID -> (class, NVIDIA's description). Classes: application (the workload's fault),
# memory-repair (a repair was recorded; the GPU keeps working), memory, hardware, interconnect.
XID_CLASSES: Mapping[int, tuple[str, str]] = {
    13: ("application", "Graphics Engine Exception"),
    31: ("application", "GPU memory page fault"),
    32: ("application", "Invalid or corrupted push buffer stream"),
    43: ("application", "GPU stopped processing"),
    45: ("application", "Preemptive cleanup, due to previous errors"),
    48: ("memory", "Double Bit ECC Error"),
    61: ("hardware", "Internal micro-controller breakpoint/warning"),
    62: ("hardware", "Internal micro-controller halt"),
    63: ("memory-repair", "ECC page retirement or row remapping recording event"),
    64: ("memory", "ECC page retirement or row remapper recording failure"),
    69: ("hardware", "Graphics Engine class error"),
    74: ("interconnect", "NVLINK Error"),
    79: ("hardware", "GPU has fallen off the bus"),
    92: ("memory", "High single-bit ECC error rate"),
    94: ("memory-repair", "Contained ECC error"),
    95: ("memory", "Uncontained ECC error"),
    119: ("hardware", "GSP RPC Timeout"),
    120: ("hardware", "GSP Error"),
}
XID_CLASS_SEVERITY: Mapping[str, Severity] = {
    "application": Severity.INFO,
    "memory-repair": Severity.WARNING,
    "memory": Severity.ERROR,
    "hardware": Severity.ERROR,
    "interconnect": Severity.ERROR,
    "unknown": Severity.WARNING,
}


@dataclass(frozen=True)
class KernelFinding:
    """One hardware event; `count` is >1 when one line reports several (EDAC "3 CE")."""

    kind: str
    severity: Severity
    device: str | None
    message: str
    line: int
    timestamp_s: float | None
    code: int | None = None
    count: int = 1

    @property
    def xid_class(self) -> str | None:
        if self.kind != "xid" or self.code is None:
            return None
        return XID_CLASSES.get(self.code, ("unknown", ""))[0]


@dataclass(frozen=True)
class KernelLog:
    format: str
    line_count: int
    findings: tuple[KernelFinding, ...]

    def of_kind(self, *kinds: str) -> tuple[KernelFinding, ...]:
        return tuple(f for f in self.findings if f.kind in kinds)


_PCI = r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"
_DMESG = re.compile(r"\[\s*(?P<ts>\d+\.\d+)\]\s?(?P<msg>.*)")
_DMESG_T = re.compile(r"\[[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} [\d:]{8} \d{4}\]\s?(?P<msg>.*)")
_DMESG_X = re.compile(r"[a-z]+\s*:[a-z]+\s*: (?P<rest>.*)")
_JOURNAL_HOST = re.compile(r"\S+ kernel: ?(?P<msg>.*)")
_JOURNAL = re.compile(r"(?:[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\dT\S+)"
                      r" \S+ kernel: ?(?P<msg>.*)")
_BANNER = re.compile(r"-- (?:Logs begin|Journal begins|Boot |No entries|Reboot).*")


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    severity: Severity | Callable[[re.Match[str]], Severity]
    device: Callable[[re.Match[str]], str | None]


def _group(name: str) -> Callable[[re.Match[str]], str | None]:
    return lambda match: match.group(name)


def _aer_severity(match: re.Match[str]) -> Severity:
    text = match.group("sev").lower()
    if text == "corrected":
        return Severity.CORRECTED
    return Severity.FATAL if "(fatal)" in text else Severity.ERROR


def _ghes_severity(match: re.Match[str]) -> Severity:
    return {"corrected": Severity.CORRECTED, "fatal": Severity.FATAL,
            "info": Severity.INFO}.get(match.group("sev").lower(), Severity.ERROR)


def _ata_error_severity(match: re.Match[str]) -> Severity:
    flags = match.group("flags").split()
    if any(flag in ("UNC", "IDNF", "AMNF", "MC") for flag in flags):
        return Severity.ERROR
    return Severity.WARNING


def _edac_severity(match: re.Match[str]) -> Severity:
    return Severity.CORRECTED if match.group("type") == "CE" else Severity.ERROR


def _io_severity(match: re.Match[str]) -> Severity:
    return Severity.WARNING if match.group("what").startswith("recoverable") else Severity.ERROR


def _edac_device(match: re.Match[str]) -> str | None:
    where = re.search(r"\bon (\S+)", match.group("rest"))
    return match.group("mc") + (f" {where.group(1)}" if where else "")


RULES: tuple[_Rule, ...] = (
    _Rule("thermal", re.compile(r"(?P<dev>CPU\d+): (?:Core|Package) temperature above "
                                r"threshold, cpu clock throttled"),
          Severity.WARNING, _group("dev")),
    _Rule("xid", re.compile(r"NVRM: Xid \((?P<dev>[^)]*)\): (?P<code>\d{1,5})\b"),
          Severity.WARNING, _group("dev")),  # severity set from XID_CLASSES
    _Rule("edac", re.compile(r"EDAC (?:\S+ )?(?P<mc>MC\d+): (?P<count>\d{1,9}) (?P<type>CE|UE)"
                             r"\b(?P<rest>.*)"),
          _edac_severity, _edac_device),
    _Rule("mce", re.compile(r"Kernel panic - not syncing: .*[Mm]achine [Cc]heck"),
          Severity.FATAL, lambda m: None),
    _Rule("mce", re.compile(r"\[Hardware Error\]: (?P<dev>CPU \d+): Machine Check"),
          Severity.ERROR, _group("dev")),
    _Rule("mce", re.compile(r"\[Hardware Error\]: Machine check events logged"),
          Severity.ERROR, lambda m: None),
    _Rule("mce", re.compile(r"\[Hardware Error\]: Machine check: "), Severity.FATAL,
          lambda m: None),
    _Rule("mce", re.compile(r"Uncorrected hardware memory error|Memory failure: 0x[0-9a-f]+"),
          Severity.ERROR, lambda m: None),
    _Rule("hardware-error", re.compile(r"\[Hardware Error\]: +event severity: (?P<sev>\w+)"),
          _ghes_severity, lambda m: None),
    _Rule("aer", re.compile(r"(?:^|\s)(?P<dev>" + _PCI + r").*PCIe Bus Error: severity="
                            r"(?P<sev>Corrected|Uncorrect(?:ed|able) \((?:Non-)?Fatal\))"),
          _aer_severity, _group("dev")),
    _Rule("aer", re.compile(r"(?:^|\s)(?P<dev>" + _PCI + r"): DPC: containment event"),
          Severity.FATAL, _group("dev")),
    _Rule("pcie-link", re.compile(r"(?:^|\s)(?P<dev>" + _PCI + r"): (?:PCI-Express bandwidth "
                                  r"available for this device may be insufficient|[\d.]+ Gb/s "
                                  r"available PCIe bandwidth, limited by)"),
          Severity.WARNING, _group("dev")),
    _Rule("io-error", re.compile(r"(?P<what>I/O error|critical medium error|critical target "
                                 r"error|critical nexus error|critical protection error|"
                                 r"recoverable transport error), dev (?P<dev>[\w-]+), sector"),
          _io_severity, _group("dev")),
    _Rule("io-error", re.compile(r"Buffer I/O error on dev(?:ice)? (?P<dev>[\w-]+)"),
          Severity.ERROR, _group("dev")),
    _Rule("io-error", re.compile(r"\[(?P<dev>sd[a-z]+)\] (?:tag#\d+ )?Sense Key : "
                                 r"(?:Medium|Hardware) Error"),
          Severity.ERROR, _group("dev")),
    _Rule("nvme", re.compile(r"(?P<dev>nvme\d+n\d+): I/O Cmd\(0x[0-9a-f]+\) @ LBA \d+, "
                             r"\d+ blocks, I/O Error"),
          Severity.ERROR, _group("dev")),
    _Rule("nvme", re.compile(r"nvme (?P<dev>nvme\d+): (?:I/O .*QID \d+ timeout|controller is "
                             r"down|Removing after probe failure|Device not ready)"),
          Severity.ERROR, _group("dev")),
    _Rule("nvme", re.compile(r"nvme (?P<dev>nvme\d+): resetting controller"),
          Severity.WARNING, _group("dev")),
    _Rule("ata", re.compile(r"(?P<dev>ata\d+(?:\.\d+)?): failed command: "),
          Severity.ERROR, _group("dev")),
    _Rule("ata", re.compile(r"(?P<dev>ata\d+(?:\.\d+)?): error: \{ (?P<flags>[^}]*)\}"),
          _ata_error_severity, _group("dev")),
    _Rule("ata", re.compile(r"(?P<dev>ata\d+): (?:hard resetting link|limiting SATA link "
                            r"speed)"),
          Severity.WARNING, _group("dev")),
)
_AMD_CORRECTED = re.compile(r"\[Hardware Error\]: Corrected error, no action required")


def parse_kernel_log(text: str) -> KernelLog:
    """Parse dmesg / journalctl -k text into hardware-error findings."""
    if not text.strip():
        fail(TOOL, "empty output (journalctl prints '-- No entries --' for an empty log)")
    formats: list[str] = []
    findings: list[KernelFinding] = []
    lines = text.splitlines()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if _BANNER.fullmatch(line):
            formats.append("journal")
            continue
        kind, timestamp, message = _split(line)
        if kind is not None:
            formats.append(kind)
        finding = _match(message, number, timestamp)
        if finding is not None:
            findings.append(finding)
        elif _AMD_CORRECTED.search(message):
            _mark_corrected(findings, number)
    if not formats:
        fail(TOOL, "no line has a dmesg '[seconds]' or a journal '... kernel:' prefix "
                   "(not dmesg / journalctl -k output?)")
    return KernelLog(format=max(set(formats), key=formats.count), line_count=len(lines),
                     findings=tuple(findings))


def _split(line: str) -> tuple[str | None, float | None, str]:
    """(format, seconds since boot, message) of one line; format None when unprefixed."""
    extended = _DMESG_X.fullmatch(line)
    if extended is not None and extended.group("rest").startswith("["):
        line = extended.group("rest")
    match = _DMESG.fullmatch(line)
    if match is not None:
        seconds = float(match.group("ts")) if len(match.group("ts")) < 30 else None
        journal = _JOURNAL_HOST.fullmatch(match.group("msg"))
        if journal is not None:
            return "journal-monotonic", seconds, journal.group("msg")
        return "dmesg", seconds, match.group("msg")
    human = _DMESG_T.fullmatch(line)
    if human is not None:
        return "dmesg", None, human.group("msg")
    journal = _JOURNAL.fullmatch(line)
    if journal is not None:
        return "journal", None, journal.group("msg")
    return None, None, line


def _match(message: str, number: int, timestamp: float | None) -> KernelFinding | None:
    for rule in RULES:
        match = rule.pattern.search(message)
        if match is None:
            continue
        severity = rule.severity(match) if callable(rule.severity) else rule.severity
        code: int | None = None
        count = 1
        if rule.kind == "xid":
            code = small_int(match.group("code"))
            xid_class = XID_CLASSES.get(code or -1, ("unknown", ""))[0]
            severity = XID_CLASS_SEVERITY[xid_class]
        elif rule.kind == "edac":
            count = small_int(match.group("count")) or 1
        return KernelFinding(kind=rule.kind, severity=severity, device=rule.device(match),
                             message=message.strip()[:300], line=number,
                             timestamp_s=timestamp, code=code, count=count)
    return None


def _mark_corrected(findings: list[KernelFinding], number: int) -> None:
    """AMD's decoder says "Corrected error" a few lines after the machine check it decodes."""
    if findings and findings[-1].kind == "mce" and number - findings[-1].line <= 12 \
            and findings[-1].severity is Severity.ERROR:
        last = findings[-1]
        findings[-1] = KernelFinding(kind=last.kind, severity=Severity.CORRECTED,
                                     device=last.device, message=last.message, line=last.line,
                                     timestamp_s=last.timestamp_s, code=last.code,
                                     count=last.count)
