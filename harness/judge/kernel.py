"""Judgements for logged hardware errors: the kernel log and the EDAC memory counters.

Machine checks, uncorrectable memory errors, fatal PCIe AER errors and disk I/O errors fail
at the first occurrence. Corrected errors (memory CE, AER corrected, corrected machine checks)
are normal in small numbers and warn above a count. NVIDIA XIDs are judged by their class
(harness.probes.kernel_log.XID_CLASSES): an application fault is a note, a memory or bus
fault fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.judge.core import Judgement, Reasons, Verdict
from harness.probes.edac import EdacCounters
from harness.probes.kernel_log import XID_CLASSES, KernelFinding, KernelLog, Severity

_SEVERITY_VERDICT = {Severity.WARNING: Verdict.WARNING, Severity.ERROR: Verdict.FAILING,
                     Severity.FATAL: Verdict.FAILING}
KIND_TEXT: Mapping[str, tuple[str, str]] = {  # kind -> (what it is, what to do)
    "mce": ("machine check (MCE)", "a CPU, cache or memory hardware error: read it with "
            "rasdaemon/mcelog and the BMC SEL"),
    "hardware-error": ("firmware-reported hardware error (APEI/GHES)",
                       "read the BMC SEL for the failing part"),
    "edac": ("memory error (EDAC)", "replace the DIMM named"),
    "aer": ("PCIe AER error", "reseat the card; replace the card, riser or board if it repeats"),
    "pcie-link": ("PCIe link too slow or narrow for the device",
                  "move the card to a slot with more lanes, or accept the platform's wiring"),
    "io-error": ("disk I/O error", "the disk could not read or write: check SMART, replace it"),
    "nvme": ("NVMe controller error", "check SMART and the slot; replace the drive if it "
             "repeats"),
    "ata": ("ATA error", "UNC/IDNF: unreadable media, replace the disk; ICRC: replace the "
            "cable"),
    "xid": ("NVIDIA XID", ""),
    "thermal": ("CPU clock throttled by temperature", "check cooling, fans and airflow"),
}


def _xid_verdicts() -> dict[str, Verdict]:
    return {"application": Verdict.HEALTHY, "memory-repair": Verdict.WARNING,
            "memory": Verdict.FAILING, "hardware": Verdict.FAILING,
            "interconnect": Verdict.FAILING, "unknown": Verdict.WARNING}


@dataclass(frozen=True)
class KernelLogThresholds:
    corrected_warn_above: int = 10
    xid_class_verdicts: Mapping[str, Verdict] = field(default_factory=_xid_verdicts)
    thermal_fails: bool = False


def judge_kernel_log(log: KernelLog, limits: KernelLogThresholds | None = None) -> Judgement:
    limits = limits or KernelLogThresholds()
    reasons = Reasons()
    groups: dict[tuple[str, str | None, Severity, int | None], list[KernelFinding]] = {}
    for finding in log.findings:
        groups.setdefault((finding.kind, finding.device, finding.severity, finding.code),
                          []).append(finding)
    corrected = 0
    corrected_text: list[str] = []
    for (kind, device, severity, code), findings in groups.items():
        count = sum(f.count for f in findings)
        first = findings[0]
        where = f" on {device}" if device else ""
        if severity is Severity.INFO and kind != "xid":
            continue
        if severity is Severity.CORRECTED:
            corrected += count
            corrected_text.append(f"{count} corrected {kind}{where}")
            continue
        if kind == "xid" and code is not None:
            xid_class, description = XID_CLASSES.get(code, ("unknown", "not in vet's table"))
            verdict = limits.xid_class_verdicts.get(xid_class, Verdict.WARNING)
            reasons.add(verdict, f"NVIDIA XID {code} ({description}; class {xid_class}){where}: "
                                 f"{count}x, first at line {first.line}: "
                                 f"{first.message[:160]!r}")
            continue
        verdict = _SEVERITY_VERDICT.get(severity, Verdict.WARNING)
        if kind == "thermal" and limits.thermal_fails:
            verdict = Verdict.FAILING
        what, advice = KIND_TEXT.get(kind, (kind, ""))
        events = "event" if count == 1 else "events"
        reasons.add(verdict, f"{what}{where}: {count} {severity.value} {events}, first at line "
                             f"{first.line}: {first.message[:160]!r}; {advice}")
    if corrected > limits.corrected_warn_above:
        reasons.warn(f"{corrected} corrected hardware errors logged (warning above "
                     f"{limits.corrected_warn_above}): " + "; ".join(corrected_text[:6]))
    elif corrected:
        reasons.note(f"{corrected} corrected hardware errors logged (at most "
                     f"{limits.corrected_warn_above} allowed): " + "; ".join(corrected_text[:6]))
    if not reasons.problems:
        reasons.note(f"kernel log ({log.line_count} lines): no machine check, uncorrectable "
                     "memory error, fatal PCIe error, disk I/O error or hardware XID")
    return reasons.judgement()


@dataclass(frozen=True)
class EdacThresholds:
    ce_warn_above: int = 0
    ue_fail_above: int = 0


def judge_edac(counters: EdacCounters, limits: EdacThresholds | None = None) -> Judgement:
    limits = limits or EdacThresholds()
    reasons = Reasons()
    if not counters.available:
        reasons.inconclusive("no EDAC memory controller (no EDAC driver loaded, or a VM): "
                             "memory errors cannot be counted on this host; load the "
                             "platform's EDAC driver (skx_edac, i10nm_edac, amd64_edac...)")
        return reasons.judgement()
    for controller in counters.controllers:
        name = f"memory controller mc{controller.index}"
        ue, ce = controller.ue_count or 0, controller.ce_count or 0
        bad = [d.name for d in controller.dimms if (d.ue_count or 0) > 0]
        worn = [d.name for d in controller.dimms if (d.ce_count or 0) > 0]
        if ue > limits.ue_fail_above:
            reasons.fail(f"{name}: {ue} uncorrectable memory errors"
                         + (f" on {', '.join(bad)}" if bad else "") + ": replace the DIMM(s)")
        if (controller.ue_noinfo_count or 0) > 0:
            reasons.fail(f"{name}: {controller.ue_noinfo_count} uncorrectable memory errors "
                         "without a location")
        if ce > limits.ce_warn_above:
            reasons.warn(f"{name}: {ce} correctable memory errors"
                         + (f" on {', '.join(worn)}" if worn else "")
                         + f" (warning above {limits.ce_warn_above}): reseat or replace")
    if not reasons.problems:
        reasons.note(f"EDAC: {len(counters.controllers)} memory controller(s), no memory "
                     "errors counted")
    return reasons.judgement()


def compare_edac(before: EdacCounters, after: EdacCounters,
                 limits: EdacThresholds | None = None) -> Judgement:
    """Counters before vs after a memory stress: UE growth fails, CE growth over the limit warns."""
    limits = limits or EdacThresholds()
    reasons = Reasons()
    if not after.available:
        return judge_edac(after, limits)
    ue = after.ue_total - before.ue_total
    ce = after.ce_total - before.ce_total
    if ue > limits.ue_fail_above:
        reasons.fail(f"{ue} uncorrectable memory errors during the test")
    if ce > limits.ce_warn_above:
        grown = [d.name for c in after.controllers for d in c.dimms
                 if (d.ce_count or 0) > ((before.dimm(d.name) or d).ce_count or 0)
                 or (before.dimm(d.name) is None and (d.ce_count or 0) > 0)]
        reasons.warn(f"{ce} correctable memory errors during the test"
                     + (f" on {', '.join(grown)}" if grown else ""))
    if not reasons.problems:
        reasons.note("no memory error counted during the test")
    return reasons.judgement()
