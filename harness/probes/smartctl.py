"""`smartctl -j` (with -x or -a) -> SmartReport, for ATA, SAT, NVMe, SCSI/SAS and RAID pass-through.

smartctl's JSON already decodes the drive's answers; this module only types them and decodes
the exit status bit by bit (smartctl(8) "RETURN VALUES"), because that byte is the one place
that says "we could not read the drive" (bits 0-1) apart from "the drive is bad" (bits 3-7).
Bit 2 alone (a SMART command failed) is common through RAID pass-through and is not a fault.

A document with only the `smartctl` block (open failed, device type not detected) is a valid
result that says so; a document without `smartctl` and `device` blocks is not smartctl output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.probes._common import (
    JsonDict,
    expect_dict,
    expect_list,
    fail,
    load_json,
    opt_dict,
    opt_int,
    opt_str,
    type_name,
)

TOOL = "smartctl"

EXIT_BITS: tuple[str, ...] = (
    "the command line did not parse or the device type could not be detected",
    "the device could not be opened (or did not answer IDENTIFY, or is asleep)",
    "a SMART or other command to the device failed",
    "the SMART health check says DISK FAILING",
    "a pre-fail attribute is at or below its threshold",
    "an attribute was at or below its threshold in the past",
    "the device error log contains errors",
    "the device self-test log contains errors",
)

NVME_CRITICAL_WARNING_BITS: tuple[str, ...] = (
    "available spare below threshold",
    "temperature above or below threshold",
    "NVM subsystem reliability degraded",
    "media placed in read-only mode",
    "volatile memory backup device failed",
    "persistent memory region unreliable",
)


@dataclass(frozen=True)
class SmartExitStatus:
    """smartctl's exit status; each property is one bit of smartctl(8)'s RETURN VALUES.

    `bits` spells out the set bits, so the JSON record of `vet judge` carries them too.
    """

    value: int
    bits: tuple[str, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", self.meanings())

    def bit(self, number: int) -> bool:
        return bool(self.value >> number & 1)

    @property
    def command_line_error(self) -> bool:
        return self.bit(0)

    @property
    def open_failed(self) -> bool:
        return self.bit(1)

    @property
    def command_failed(self) -> bool:
        return self.bit(2)

    @property
    def disk_failing(self) -> bool:
        return self.bit(3)

    @property
    def prefail_at_threshold(self) -> bool:
        return self.bit(4)

    @property
    def past_threshold(self) -> bool:
        return self.bit(5)

    @property
    def error_log_has_errors(self) -> bool:
        return self.bit(6)

    @property
    def self_test_log_has_errors(self) -> bool:
        return self.bit(7)

    @property
    def unreadable(self) -> bool:
        """Bits 0 or 1: smartctl never read the drive, so nothing is known about it."""
        return self.command_line_error or self.open_failed

    def meanings(self) -> tuple[str, ...]:
        return tuple(text for number, text in enumerate(EXIT_BITS) if self.bit(number))


@dataclass(frozen=True)
class AtaAttribute:
    """One row of the ATA SMART attribute table; `raw` is smartctl's decoded raw value."""

    id: int
    name: str
    value: int | None
    worst: int | None
    thresh: int | None
    raw: int | None
    raw_string: str | None
    when_failed: str
    prefailure: bool | None

    @property
    def failing_now(self) -> bool:
        return self.when_failed == "now"

    @property
    def failed_in_past(self) -> bool:
        return self.when_failed in ("past", "In_the_past")


@dataclass(frozen=True)
class NvmeHealth:
    """The NVMe SMART / health information log (log page 02h)."""

    critical_warning: int
    media_errors: int | None
    available_spare_pct: int | None
    available_spare_threshold_pct: int | None
    percentage_used: int | None
    num_err_log_entries: int | None
    temperature_c: int | None
    power_on_hours: int | None
    unsafe_shutdowns: int | None
    data_units_written: int | None

    @property
    def critical_warnings(self) -> tuple[str, ...]:
        """The set bits of critical_warning, in words (NVMe base spec, figure "SMART log")."""
        named = [text for number, text in enumerate(NVME_CRITICAL_WARNING_BITS)
                 if self.critical_warning >> number & 1]
        if self.critical_warning >> len(NVME_CRITICAL_WARNING_BITS):
            named.append(f"reserved bits set (0x{self.critical_warning:x})")
        return tuple(named)

    @property
    def spare_below_threshold(self) -> bool:
        if self.critical_warning & 1:
            return True
        spare, threshold = self.available_spare_pct, self.available_spare_threshold_pct
        return spare is not None and threshold is not None and spare < threshold


@dataclass(frozen=True)
class ScsiErrorCounters:
    """One direction (read, write, verify) of the SCSI error counter log page."""

    direction: str
    total_uncorrected_errors: int | None
    total_errors_corrected: int | None
    gigabytes_processed: float | None


@dataclass(frozen=True)
class SelfTestEntry:
    """A self-test log entry; passed is None for aborted or still-running tests."""

    kind: str | None
    status: str | None
    passed: bool | None
    lifetime_hours: int | None
    lba: int | None


@dataclass(frozen=True)
class SmartReport:
    smartctl_version: str | None
    argv: tuple[str, ...]
    exit_status: SmartExitStatus | None
    messages: tuple[str, ...]
    device_name: str | None
    device_info_name: str | None
    device_type: str | None
    protocol: str | None
    model_family: str | None
    model_name: str | None
    serial_number: str | None
    firmware_version: str | None
    capacity_bytes: int | None
    rotation_rpm: int | None
    smart_passed: bool | None
    power_on_hours: int | None
    temperature_c: int | None
    ata_attributes: tuple[AtaAttribute, ...]
    ata_error_count: int | None
    nvme: NvmeHealth | None
    scsi_grown_defects: int | None
    scsi_error_counters: tuple[ScsiErrorCounters, ...]
    self_tests: tuple[SelfTestEntry, ...]

    @property
    def kind(self) -> str | None:
        """'ata', 'nvme' or 'scsi' (smartctl's protocol), None when no device was read."""
        return None if self.protocol is None else self.protocol.lower()

    @property
    def label(self) -> str:
        """How reasons name the drive: device path (pass-through slot), model and serial."""
        named = [arg for arg in self.argv[1:] if not arg.startswith("-")]
        name = (self.device_info_name or self.device_name or (named[-1] if named else None)
                or "the drive")
        details = [part for part in (self.model_name, self.serial_number and
                                     f"serial {self.serial_number}") if part]
        return f"{name} ({', '.join(details)})" if details else name

    @property
    def has_health_data(self) -> bool:
        """Whether anything about the drive's health was read (status, attributes, logs)."""
        return (self.smart_passed is not None or bool(self.ata_attributes)
                or self.nvme is not None or self.scsi_grown_defects is not None
                or bool(self.scsi_error_counters))

    def attribute(self, attribute_id: int) -> AtaAttribute | None:
        return next((a for a in self.ata_attributes if a.id == attribute_id), None)


def parse_smartctl(text: str) -> SmartReport:
    """Parse one `smartctl -j` document (any of -a, -x, -H -A, --info ...)."""
    data = expect_dict(TOOL, load_json(TOOL, text), "top level")
    if "smartctl" not in data and "device" not in data:
        fail(TOOL, "neither a 'smartctl' nor a 'device' block (not smartctl -j output?)")
    header = opt_dict(TOOL, data, "smartctl", "top level")
    exit_status: SmartExitStatus | None = None
    argv: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    version: str | None = None
    if header is not None:
        code = opt_int(TOOL, header, "exit_status", "smartctl")
        if code is None:
            fail(TOOL, "smartctl block without 'exit_status' (truncated?)")
        if not 0 <= code <= 255:
            fail(TOOL, f"smartctl.exit_status: expected 0..255, got {code}")
        exit_status = SmartExitStatus(code)
        argv = _strings(header.get("argv"), "smartctl.argv")
        messages = _messages(header)
        version = _version(header.get("version"))
    device = opt_dict(TOOL, data, "device", "top level") or {}
    status = opt_dict(TOOL, data, "smart_status", "top level")
    passed = None if status is None else status.get("passed")
    if passed is not None and not isinstance(passed, bool):
        fail(TOOL, f"smart_status.passed: expected true/false, got {type_name(passed)}")
    power_on = opt_dict(TOOL, data, "power_on_time", "top level") or {}
    temperature = opt_dict(TOOL, data, "temperature", "top level") or {}
    return SmartReport(
        smartctl_version=version,
        argv=argv,
        exit_status=exit_status,
        messages=messages,
        device_name=opt_str(TOOL, device, "name", "device"),
        device_info_name=opt_str(TOOL, device, "info_name", "device"),
        device_type=opt_str(TOOL, device, "type", "device"),
        protocol=opt_str(TOOL, device, "protocol", "device"),
        model_family=opt_str(TOOL, data, "model_family", "top level"),
        model_name=(opt_str(TOOL, data, "model_name", "top level")
                    or opt_str(TOOL, data, "scsi_model_name", "top level")),
        serial_number=opt_str(TOOL, data, "serial_number", "top level"),
        firmware_version=(opt_str(TOOL, data, "firmware_version", "top level")
                          or opt_str(TOOL, data, "revision", "top level")
                          or opt_str(TOOL, data, "scsi_revision", "top level")),
        capacity_bytes=_capacity(data),
        rotation_rpm=opt_int(TOOL, data, "rotation_rate", "top level"),
        smart_passed=passed,
        power_on_hours=opt_int(TOOL, power_on, "hours", "power_on_time"),
        temperature_c=opt_int(TOOL, temperature, "current", "temperature"),
        ata_attributes=_attributes(data),
        ata_error_count=_ata_error_count(data),
        nvme=_nvme(data),
        scsi_grown_defects=opt_int(TOOL, data, "scsi_grown_defect_list", "top level"),
        scsi_error_counters=_scsi_counters(data),
        self_tests=_self_tests(data),
    )


def _version(value: object) -> str | None:
    if value is None:
        return None
    parts = expect_list(TOOL, value, "smartctl.version")
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in parts):
        fail(TOOL, "smartctl.version: expected a list of integers")
    return ".".join(str(p) for p in parts)


def _strings(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = expect_list(TOOL, value, where)
    if not all(isinstance(item, str) for item in items):
        fail(TOOL, f"{where}: expected a list of strings")
    return tuple(str(item) for item in items)


def _messages(header: JsonDict) -> tuple[str, ...]:
    value = header.get("messages")
    if value is None:
        return ()
    texts: list[str] = []
    for index, item in enumerate(expect_list(TOOL, value, "smartctl.messages")):
        message = expect_dict(TOOL, item, f"smartctl.messages[{index}]")
        text = opt_str(TOOL, message, "string", f"smartctl.messages[{index}]")
        if text is not None:
            texts.append(text)
    return tuple(texts)


def _capacity(data: JsonDict) -> int | None:
    capacity = opt_dict(TOOL, data, "user_capacity", "top level")
    if capacity is not None:
        return opt_int(TOOL, capacity, "bytes", "user_capacity")
    return opt_int(TOOL, data, "nvme_total_capacity", "top level")


def _attributes(data: JsonDict) -> tuple[AtaAttribute, ...]:
    block = opt_dict(TOOL, data, "ata_smart_attributes", "top level")
    if block is None:
        return ()
    rows = expect_list(TOOL, block.get("table", []), "ata_smart_attributes.table")
    attributes: list[AtaAttribute] = []
    for index, row in enumerate(rows):
        where = f"ata_smart_attributes.table[{index}]"
        entry = expect_dict(TOOL, row, where)
        attribute_id = opt_int(TOOL, entry, "id", where)
        if attribute_id is None:
            fail(TOOL, f"{where}: attribute without an 'id' (truncated?)")
        raw = opt_dict(TOOL, entry, "raw", where) or {}
        flags = opt_dict(TOOL, entry, "flags", where) or {}
        prefailure = flags.get("prefailure")
        attributes.append(AtaAttribute(
            id=attribute_id,
            name=opt_str(TOOL, entry, "name", where) or f"attribute {attribute_id}",
            value=opt_int(TOOL, entry, "value", where),
            worst=opt_int(TOOL, entry, "worst", where),
            thresh=opt_int(TOOL, entry, "thresh", where),
            raw=opt_int(TOOL, raw, "value", f"{where}.raw"),
            raw_string=opt_str(TOOL, raw, "string", f"{where}.raw"),
            when_failed=(opt_str(TOOL, entry, "when_failed", where) or "").strip(),
            prefailure=prefailure if isinstance(prefailure, bool) else None,
        ))
    return tuple(attributes)


def _ata_error_count(data: JsonDict) -> int | None:
    log = opt_dict(TOOL, data, "ata_smart_error_log", "top level")
    if log is None:
        return None
    counts = []
    for section in ("extended", "summary"):
        block = opt_dict(TOOL, log, section, "ata_smart_error_log")
        if block is not None:
            count = opt_int(TOOL, block, "count", f"ata_smart_error_log.{section}")
            if count is not None:
                counts.append(count)
    return max(counts) if counts else None


def _nvme(data: JsonDict) -> NvmeHealth | None:
    log = opt_dict(TOOL, data, "nvme_smart_health_information_log", "top level")
    if log is None:
        return None
    where = "nvme_smart_health_information_log"
    warning = opt_int(TOOL, log, "critical_warning", where)
    if warning is None:
        fail(TOOL, f"{where}: no 'critical_warning' (truncated?)")
    if not 0 <= warning <= 255:
        fail(TOOL, f"{where}.critical_warning: expected a byte (0..255), got {warning}")
    return NvmeHealth(
        critical_warning=warning,
        media_errors=opt_int(TOOL, log, "media_errors", where),
        available_spare_pct=opt_int(TOOL, log, "available_spare", where),
        available_spare_threshold_pct=opt_int(TOOL, log, "available_spare_threshold", where),
        percentage_used=opt_int(TOOL, log, "percentage_used", where),
        num_err_log_entries=opt_int(TOOL, log, "num_err_log_entries", where),
        temperature_c=opt_int(TOOL, log, "temperature", where),
        power_on_hours=opt_int(TOOL, log, "power_on_hours", where),
        unsafe_shutdowns=opt_int(TOOL, log, "unsafe_shutdowns", where),
        data_units_written=opt_int(TOOL, log, "data_units_written", where),
    )


def _scsi_counters(data: JsonDict) -> tuple[ScsiErrorCounters, ...]:
    log = opt_dict(TOOL, data, "scsi_error_counter_log", "top level")
    if log is None:
        return ()
    counters: list[ScsiErrorCounters] = []
    for direction in ("read", "write", "verify"):
        where = f"scsi_error_counter_log.{direction}"
        block = opt_dict(TOOL, log, direction, "scsi_error_counter_log")
        if block is None:
            continue
        processed = opt_str(TOOL, block, "gigabytes_processed", where)
        gigabytes: float | None = None
        if processed is not None:
            try:
                gigabytes = float(processed)
            except ValueError:
                fail(TOOL, f"{where}.gigabytes_processed: expected a number, got "
                           f"{processed[:40]!r}")
        counters.append(ScsiErrorCounters(
            direction=direction,
            total_uncorrected_errors=opt_int(TOOL, block, "total_uncorrected_errors", where),
            total_errors_corrected=opt_int(TOOL, block, "total_errors_corrected", where),
            gigabytes_processed=gigabytes,
        ))
    return tuple(counters)


def _self_tests(data: JsonDict) -> tuple[SelfTestEntry, ...]:
    """ATA (standard and extended logs), NVMe and SCSI self-test logs, newest first."""
    entries: list[SelfTestEntry] = []
    ata = opt_dict(TOOL, data, "ata_smart_self_test_log", "top level")
    if ata is not None:
        for section in ("extended", "standard"):
            block = opt_dict(TOOL, ata, section, "ata_smart_self_test_log")
            if block is None:
                continue
            where = f"ata_smart_self_test_log.{section}.table"
            for index, row in enumerate(expect_list(TOOL, block.get("table", []), where)):
                entries.append(_ata_self_test(expect_dict(TOOL, row, f"{where}[{index}]"),
                                              f"{where}[{index}]"))
            if entries:
                break  # the extended log repeats the standard one with more entries
    nvme = opt_dict(TOOL, data, "nvme_self_test_log", "top level")
    if nvme is not None:
        where = "nvme_self_test_log.table"
        for index, row in enumerate(expect_list(TOOL, nvme.get("table", []), where)):
            entries.append(_nvme_self_test(expect_dict(TOOL, row, f"{where}[{index}]"),
                                           f"{where}[{index}]"))
    for index in range(20):
        block = opt_dict(TOOL, data, f"scsi_self_test_{index}", "top level")
        if block is None:
            break
        entries.append(_scsi_self_test(block, f"scsi_self_test_{index}"))
    return tuple(entries)


def _coded(entry: JsonDict, key: str, where: str) -> tuple[int | None, str | None, JsonDict]:
    block = opt_dict(TOOL, entry, key, where) or {}
    return (opt_int(TOOL, block, "value", f"{where}.{key}"),
            opt_str(TOOL, block, "string", f"{where}.{key}"), block)


def _ata_self_test(entry: JsonDict, where: str) -> SelfTestEntry:
    _, kind, _ = _coded(entry, "type", where)
    _, status, block = _coded(entry, "status", where)
    passed = block.get("passed")
    return SelfTestEntry(
        kind=kind,
        status=status,
        passed=passed if isinstance(passed, bool) else None,
        lifetime_hours=opt_int(TOOL, entry, "lifetime_hours", where),
        lba=opt_int(TOOL, entry, "lba", where),
    )


def _nvme_self_test(entry: JsonDict, where: str) -> SelfTestEntry:
    _, kind, _ = _coded(entry, "self_test_code", where)
    code, status, _ = _coded(entry, "self_test_result", where)
    # NVMe result codes: 0 completed without error, 5-7 failed; the others are aborts.
    passed = None if code is None else (True if code == 0 else False if code in (5, 6, 7)
                                        else None)
    return SelfTestEntry(kind=kind, status=status, passed=passed,
                         lifetime_hours=opt_int(TOOL, entry, "power_on_hours", where),
                         lba=opt_int(TOOL, entry, "lba", where))


def _scsi_self_test(entry: JsonDict, where: str) -> SelfTestEntry:
    _, kind, _ = _coded(entry, "code", where)
    code, status, _ = _coded(entry, "result", where)
    # SCSI self-test results: 0 completed, 3-7 failed; 1-2 aborted, 15 in progress.
    passed = None if code is None else (True if code == 0 else False if 3 <= code <= 7
                                        else None)
    power_on = opt_dict(TOOL, entry, "power_on_time", where) or {}
    return SelfTestEntry(kind=kind, status=status, passed=passed,
                         lifetime_hours=opt_int(TOOL, power_on, "hours", f"{where}.power_on_time"),
                         lba=opt_int(TOOL, entry, "lba_first_failure", where))
