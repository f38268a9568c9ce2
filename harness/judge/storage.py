"""Judgements for disks: smartctl (one report, and before/after a stress), fio and lsblk.

Defaults follow what MAAS, Checkbox and the published drive-failure statistics agree on:
ATA attributes 5, 187, 188, 197, 198 with a raw value above 0 predict failure; 199 counts
interface CRC errors (cable or backplane, not media); NVMe critical warnings, media errors and
a spare below its threshold fail; error-log entries alone do not (rejected admin commands
fill them). Every limit is a SmartThresholds field, so a profile can change it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.judge.core import Judgement, Reasons
from harness.probes.fio import FioResult
from harness.probes.lsblk import BlockDevice
from harness.probes.smartctl import SelfTestEntry, SmartReport

ATA_MEANING: Mapping[int, str] = {
    5: "sectors already remapped to spares",
    187: "errors the drive could not correct",
    188: "commands that timed out",
    197: "unreadable sectors waiting to be remapped",
    198: "sectors found uncorrectable by the offline scan",
}


def _default_failing_raw() -> dict[int, int]:
    return {5: 0, 187: 0, 188: 0, 197: 0, 198: 0}


@dataclass(frozen=True)
class SmartThresholds:
    """Limits for judge_smartctl / compare_smart; a value above its limit triggers."""

    ata_failing_raw: Mapping[int, int] = field(default_factory=_default_failing_raw)
    ata_crc_attribute: int = 199
    ata_crc_warn_above: int = 0
    nvme_media_errors_fail_above: int = 0
    nvme_used_warn_pct: int = 80
    nvme_used_fail_pct: int = 100
    scsi_grown_defects_warn_above: int = 0
    scsi_uncorrected_fail_above: int = 0
    strict: bool = False  # grown defects above their limit fail instead of warn
    power_on_hours_note_above: int = 50_000


def judge_smartctl(report: SmartReport, limits: SmartThresholds | None = None) -> Judgement:
    limits = limits or SmartThresholds()
    reasons = Reasons()
    name = report.label
    status = report.exit_status
    if status is not None and status.unreadable:
        said = "; ".join(report.messages) or "; ".join(status.meanings())
        reasons.inconclusive(
            f"{name}: smartctl could not read the drive (exit status {status.value}: {said}); "
            "this says nothing about the drive's health: check the device path, the device "
            "type (-d) and permissions")
        return reasons.judgement()
    if not report.has_health_data:
        reasons.inconclusive(
            f"{name}: smartctl returned no SMART health data (a RAID volume or a device "
            "without SMART); query the member disks, e.g. smartctl -d megaraid,N or -d sat")
        return reasons.judgement()
    if report.smart_passed is False:
        reasons.fail(f"{name}: the drive's own SMART health check says FAILED: replace it")
    elif status is not None and status.disk_failing:
        reasons.fail(f"{name}: smartctl exit status bit 3: SMART health check says DISK FAILING")
    _ata(report, limits, reasons)
    _nvme(report, limits, reasons)
    _scsi(report, limits, reasons)
    _self_tests(report, reasons)
    if status is not None:
        _exit_bits(report, reasons)
    hours = report.power_on_hours
    if hours is not None and hours > limits.power_on_hours_note_above:
        reasons.note(f"{name}: {hours} power-on hours (about {hours / 8766:.1f} years): "
                     "expect wear-out failures sooner than on a young drive")
    if not reasons.problems:
        reasons.note(f"{name}: SMART health passed; no failure counter above its limit")
    return reasons.judgement()


def _ata(report: SmartReport, limits: SmartThresholds, reasons: Reasons) -> None:
    name = report.label
    for attribute in report.ata_attributes:
        limit = limits.ata_failing_raw.get(attribute.id)
        if limit is not None and attribute.raw is not None and attribute.raw > limit:
            meaning = ATA_MEANING.get(attribute.id, "a failure-predicting counter")
            reasons.fail(f"{name}: {attribute.name} (attribute {attribute.id}) raw value "
                         f"{attribute.raw} is above {limit}: {meaning}; do not deploy this drive")
        if attribute.failing_now:
            text = (f"{name}: {attribute.name} (attribute {attribute.id}) normalized value "
                    f"{attribute.value} is at or below its threshold {attribute.thresh} now")
            if attribute.prefailure is False:
                reasons.warn(text + " (an old-age attribute: wear, not imminent failure)")
            else:
                reasons.fail(text + " (a pre-fail attribute: the drive predicts its failure)")
        elif attribute.failed_in_past:
            reasons.warn(f"{name}: {attribute.name} (attribute {attribute.id}) was at or "
                         "below its threshold in the past")
    crc = report.attribute(limits.ata_crc_attribute)
    if crc is not None and crc.raw is not None and crc.raw > limits.ata_crc_warn_above:
        reasons.warn(f"{name}: {crc.name} (attribute {crc.id}) is {crc.raw}: interface CRC "
                     "errors come from the SATA cable, backplane or connector, not the media; "
                     "reseat or replace the cable and check that the count stops growing")


def _nvme(report: SmartReport, limits: SmartThresholds, reasons: Reasons) -> None:
    nvme = report.nvme
    if nvme is None:
        return
    name = report.label
    if nvme.critical_warning:
        reasons.fail(f"{name}: NVMe critical warning 0x{nvme.critical_warning:02x} ("
                     + ", ".join(nvme.critical_warnings) + "): replace the drive")
    if nvme.media_errors is not None and nvme.media_errors > limits.nvme_media_errors_fail_above:
        reasons.fail(f"{name}: {nvme.media_errors} NVMe media errors (data the drive could not "
                     "read back intact): do not accept it for production")
    if nvme.spare_below_threshold and not nvme.critical_warning & 1:
        reasons.fail(f"{name}: available spare {nvme.available_spare_pct}% is below the "
                     f"threshold {nvme.available_spare_threshold_pct}%")
    used = nvme.percentage_used
    if used is not None and used >= limits.nvme_used_fail_pct:
        reasons.fail(f"{name}: {used}% of the rated endurance used (limit "
                     f"{limits.nvme_used_fail_pct}%): worn out for a new deployment")
    elif used is not None and used >= limits.nvme_used_warn_pct:
        reasons.warn(f"{name}: {used}% of the rated endurance used (warning at "
                     f"{limits.nvme_used_warn_pct}%)")
    if nvme.num_err_log_entries:
        reasons.note(f"{name}: {nvme.num_err_log_entries} NVMe error-log entries; without "
                     "media errors these are usually rejected admin commands, not a fault")


def _scsi(report: SmartReport, limits: SmartThresholds, reasons: Reasons) -> None:
    name = report.label
    defects = report.scsi_grown_defects
    if defects is not None and defects > limits.scsi_grown_defects_warn_above:
        text = f"{name}: {defects} grown defects (sectors remapped since manufacture)"
        if limits.strict:
            reasons.fail(text + ": the strict zero-defect policy rejects the drive")
        else:
            reasons.warn(text + ": accept only if the count stays stable")
    for counters in report.scsi_error_counters:
        errors = counters.total_uncorrected_errors
        if errors is not None and errors > limits.scsi_uncorrected_fail_above:
            reasons.fail(f"{name}: {errors} uncorrected {counters.direction} errors: data was "
                         "lost on this drive; replace it")


def _self_tests(report: SmartReport, reasons: Reasons) -> None:
    finished = [entry for entry in report.self_tests if entry.passed is not None]
    if not finished:
        return
    latest = finished[0]
    if latest.passed is False:
        reasons.fail(f"{report.label}: the latest self-test failed: {_test(latest)}")
    elif any(entry.passed is False for entry in finished[1:]):
        failed = next(entry for entry in finished if entry.passed is False)
        reasons.note(f"{report.label}: an older self-test failed ({_test(failed)}); "
                     "later tests passed")


def _test(entry: SelfTestEntry) -> str:
    where = f" at LBA {entry.lba}" if entry.lba is not None else ""
    when = f" after {entry.lifetime_hours} h" if entry.lifetime_hours is not None else ""
    return f"{entry.kind or 'self-test'}: {entry.status or 'failed'}{where}{when}"


def _exit_bits(report: SmartReport, reasons: Reasons) -> None:
    status = report.exit_status
    assert status is not None
    name = report.label
    if status.prefail_at_threshold and not any(a.failing_now for a in report.ata_attributes):
        reasons.fail(f"{name}: smartctl exit status bit 4: a pre-fail attribute is at or "
                     "below its threshold")
    if status.past_threshold and not any(a.failed_in_past for a in report.ata_attributes):
        reasons.warn(f"{name}: smartctl exit status bit 5: an attribute was at or below "
                     "its threshold in the past")
    if status.error_log_has_errors:
        count = f"{report.ata_error_count} " if report.ata_error_count else ""
        reasons.warn(f"{name}: the drive's error log holds {count}errors (smartctl exit "
                     "status bit 6); read them with smartctl -l error and check they are old")
    if status.self_test_log_has_errors and not any(
            e.passed is False for e in report.self_tests[:1]):
        reasons.fail(f"{name}: smartctl exit status bit 7: the self-test log records failed "
                     "tests not outdated by a later passing one")
    if status.command_failed and status.value == 4:
        reasons.note(f"{name}: smartctl exit status bit 2 (a SMART command failed), common "
                     "through RAID pass-through; not a disk fault on its own")


def compare_smart(before: SmartReport, after: SmartReport,
                  limits: SmartThresholds | None = None) -> Judgement:
    """Before vs after stress: any growth of a failure counter fails (CRC growth warns)."""
    limits = limits or SmartThresholds()
    reasons = Reasons()
    name = after.label
    # The serial is the drive's identity (device names can change across a reboot).
    same = (before.serial_number == after.serial_number if before.serial_number
            and after.serial_number else before.label == after.label)
    if not same:
        reasons.inconclusive(f"the snapshots are of different drives ({before.label} before, "
                             f"{after.label} after)")
        return reasons.judgement()
    for attribute_id in (*limits.ata_failing_raw, limits.ata_crc_attribute):
        old, new = before.attribute(attribute_id), after.attribute(attribute_id)
        if old is None or new is None or old.raw is None or new.raw is None:
            continue
        if new.raw > old.raw:
            text = f"{name}: {new.name} (attribute {attribute_id}) grew from {old.raw} to {new.raw}"
            if attribute_id == limits.ata_crc_attribute:
                reasons.warn(text + " during the test: check the cable and backplane")
            else:
                reasons.fail(text + " during the test")
    if before.nvme is not None and after.nvme is not None:
        pairs = (("media errors", before.nvme.media_errors, after.nvme.media_errors),)
        for label, old_value, new_value in pairs:
            if old_value is not None and new_value is not None and new_value > old_value:
                reasons.fail(f"{name}: NVMe {label} grew from {old_value} to {new_value} "
                             "during the test")
        new_bits = after.nvme.critical_warning & ~before.nvme.critical_warning
        if new_bits:
            reasons.fail(f"{name}: NVMe critical warning bits appeared during the test "
                         f"(0x{new_bits:02x}: " + ", ".join(after.nvme.critical_warnings) + ")")
    old_defects, new_defects = before.scsi_grown_defects, after.scsi_grown_defects
    if old_defects is not None and new_defects is not None and new_defects > old_defects:
        reasons.fail(f"{name}: grown defects grew from {old_defects} to {new_defects} "
                     "during the test")
    old_counts = {c.direction: c.total_uncorrected_errors for c in before.scsi_error_counters}
    for counters in after.scsi_error_counters:
        old_count = old_counts.get(counters.direction)
        new_count = counters.total_uncorrected_errors
        if old_count is not None and new_count is not None and new_count > old_count:
            reasons.fail(f"{name}: uncorrected {counters.direction} errors grew from "
                         f"{old_count} to {new_count} during the test")
    if before.smart_passed is not False and after.smart_passed is False:
        reasons.fail(f"{name}: the SMART health check turned to FAILED during the test")
    if not reasons.problems:
        reasons.note(f"{name}: no failure counter grew during the test")
    return reasons.judgement()


@dataclass(frozen=True)
class FioThresholds:
    """Optional performance floors; None = errors only (the default)."""

    min_iops: float | None = None
    max_mean_latency_ms: float | None = None


def judge_fio(result: FioResult, limits: FioThresholds | None = None) -> Judgement:
    limits = limits or FioThresholds()
    reasons = Reasons()
    for message in result.verify_errors[:5]:
        reasons.fail(f"fio data verification failed: {message}")
    for job in result.failed_jobs:
        errors = f", {job.total_err} I/O errors" if job.total_err else ""
        reasons.fail(f"fio job {job.name!r} ended with error {job.error}{errors}")
    for job in result.jobs:
        if limits.min_iops is not None and job.iops < limits.min_iops:
            reasons.fail(f"fio job {job.name!r}: {job.iops:.0f} IOPS, below the floor "
                         f"{limits.min_iops:.0f}")
        for direction, io in (("read", job.read), ("write", job.write)):
            if io is None or io.iops == 0 or io.lat_mean_ns is None:
                continue
            latency_ms = io.lat_mean_ns / 1e6
            if limits.max_mean_latency_ms is not None and latency_ms > limits.max_mean_latency_ms:
                reasons.fail(f"fio job {job.name!r}: mean {direction} latency {latency_ms:.1f} "
                             f"ms, above the limit {limits.max_mean_latency_ms:.1f} ms")
    if not reasons.problems:
        iops = sum(job.iops for job in result.jobs)
        reasons.note(f"fio: {len(result.jobs)} job(s) without errors, {iops:.0f} IOPS in total")
    return reasons.judgement()


def judge_lsblk(devices: list[BlockDevice]) -> Judgement:
    """lsblk is an inventory: it lists disks, it says nothing about their health."""
    reasons = Reasons()
    disks = [d for d in devices if d.type == "disk"]
    reasons.note(f"lsblk lists {len(disks)} disk(s) and {len(devices) - len(disks)} other "
                 "top-level device(s); an inventory, not a health check (use smartctl)")
    return reasons.judgement()

