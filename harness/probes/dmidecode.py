"""`dmidecode` text -> DmiDecode: every record, plus typed views of the ones vetting uses.

A host without SMBIOS (many VMs) prints only a header such as
"# No SMBIOS nor DMI entry point found, sorry." and parses to an empty result, because
that is a fact about the host, not a broken capture. Text that is not dmidecode output is
a ParseError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from harness.probes._common import binary_size, fail, small_int

TOOL = "dmidecode"

_HANDLE = re.compile(r"Handle (0x[0-9A-Fa-f]{1,8}), DMI type (\d{1,3}), (\d{1,6}) bytes?")
_HEADER_MARKERS = (
    "# dmidecode",
    "# No SMBIOS nor DMI entry point found",
    "Getting SMBIOS data from",
    "Scanning /dev/mem for entry point",
)
_SMBIOS_VERSION = re.compile(r"SMBIOS ([\d.]+) present\.")
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class DmiRecord:
    """One structure: `fields` holds "Key: value" lines, `lists` the indented item lists."""

    handle: str
    type: int
    size_bytes: int
    title: str
    fields: Mapping[str, str]
    lists: Mapping[str, tuple[str, ...]]
    notes: tuple[str, ...] = ()

    def get(self, key: str) -> str | None:
        return self.fields.get(key)


@dataclass(frozen=True)
class DmiSystem:
    manufacturer: str | None
    product_name: str | None
    version: str | None
    serial_number: str | None
    uuid: str | None
    sku_number: str | None
    family: str | None


@dataclass(frozen=True)
class DmiBios:
    vendor: str | None
    version: str | None
    release_date: str | None
    bios_revision: str | None
    firmware_revision: str | None


@dataclass(frozen=True)
class DmiBaseboard:
    manufacturer: str | None
    product_name: str | None
    version: str | None
    serial_number: str | None


@dataclass(frozen=True)
class DmiChassis:
    """Type 3; power_supply_state is the chassis-level PSU verdict (Safe, Warning, Critical)."""

    manufacturer: str | None
    type: str | None
    serial_number: str | None
    boot_up_state: str | None
    power_supply_state: str | None
    thermal_state: str | None
    security_status: str | None


@dataclass(frozen=True)
class DmiProcessor:
    socket: str | None
    manufacturer: str | None
    version: str | None
    status: str | None
    core_count: int | None
    core_enabled: int | None
    thread_count: int | None
    max_speed_mhz: int | None
    current_speed_mhz: int | None

    @property
    def populated(self) -> bool:
        """SMBIOS says "Populated, Enabled" / "Unpopulated" (an empty socket)."""
        return self.status is not None and self.status.startswith("Populated")


@dataclass(frozen=True)
class DmiMemoryDevice:
    """Type 17; size_bytes is None for "No Module Installed" (and unreadable sizes)."""

    handle: str
    locator: str | None
    bank_locator: str | None
    size_bytes: int | None
    size_text: str | None
    type: str | None
    form_factor: str | None
    speed_mts: int | None
    configured_speed_mts: int | None
    manufacturer: str | None
    serial_number: str | None
    part_number: str | None
    error_information_handle: str | None
    type_detail: str | None = None
    memory_technology: str | None = None
    volatile_size_bytes: int | None = None
    non_volatile_size_bytes: int | None = None
    array_use: str | None = None

    @property
    def installed(self) -> bool:
        return bool(self.size_bytes)

    @property
    def is_system_memory(self) -> bool:
        """False for devices in a non-RAM array, such as an old board's BIOS flash chip."""
        return self.array_use in (None, "System Memory")

    @property
    def is_persistent_memory(self) -> bool:
        """Optane-style PMem DIMMs: they must not count as DRAM capacity."""
        technology = (self.memory_technology or "").lower()
        return "persistent" in technology or self.type == "Logical non-volatile device"


@dataclass(frozen=True)
class DmiPowerSupply:
    """Type 39; status reads like "Present, OK", "Present, Critical", "Not Present"."""

    name: str | None
    location: str | None
    manufacturer: str | None
    serial_number: str | None
    model_part_number: str | None
    max_power_capacity_w: int | None
    status: str | None
    plugged: bool | None
    hot_replaceable: bool | None

    @property
    def present(self) -> bool:
        return self.status is not None and self.status.startswith("Present")

    @property
    def health(self) -> str | None:
        """The part after "Present, ": OK, Critical, Non-critical, Unknown..."""
        if self.status is None or "," not in self.status:
            return None
        return self.status.split(",", 1)[1].strip()


@dataclass(frozen=True)
class DmiMemoryError:
    """Type 18 (32-bit) or 33 (64-bit) Memory Error Information.

    linked_from lists the handles whose "Error Information Handle" points here (a DIMM,
    an array), so a finding can name the slot.
    """

    handle: str
    type: int
    error_type: str | None
    granularity: str | None
    operation: str | None
    vendor_syndrome: str | None
    memory_array_address: str | None
    device_address: str | None
    resolution: str | None
    linked_from: tuple[str, ...]

    @property
    def is_error(self) -> bool:
        """True when the BIOS recorded an actual error type (not OK/Unknown/Other)."""
        return self.error_type not in (None, "OK", "Unknown", "Other")


@dataclass(frozen=True)
class DmiDecode:
    """All records of one dmidecode run, in order; empty when the host has no SMBIOS."""

    dmidecode_version: str | None
    smbios_version: str | None
    records: tuple[DmiRecord, ...]

    def of_type(self, *types: int) -> tuple[DmiRecord, ...]:
        return tuple(record for record in self.records if record.type in types)

    def by_handle(self, handle: str) -> DmiRecord | None:
        return next((r for r in self.records if r.handle.lower() == handle.lower()), None)

    def system(self) -> DmiSystem | None:
        record = _first(self.of_type(1))
        if record is None:
            return None
        return DmiSystem(
            manufacturer=record.get("Manufacturer"),
            product_name=record.get("Product Name"),
            version=record.get("Version"),
            serial_number=record.get("Serial Number"),
            uuid=record.get("UUID"),
            sku_number=record.get("SKU Number"),
            family=record.get("Family"),
        )

    def bios(self) -> DmiBios | None:
        record = _first(self.of_type(0))
        if record is None:
            return None
        return DmiBios(
            vendor=record.get("Vendor"),
            version=record.get("Version"),
            release_date=record.get("Release Date"),
            bios_revision=record.get("BIOS Revision"),
            firmware_revision=record.get("Firmware Revision"),
        )

    def baseboard(self) -> DmiBaseboard | None:
        record = _first(self.of_type(2))
        if record is None:
            return None
        return DmiBaseboard(
            manufacturer=record.get("Manufacturer"),
            product_name=record.get("Product Name"),
            version=record.get("Version"),
            serial_number=record.get("Serial Number"),
        )

    def chassis(self) -> DmiChassis | None:
        record = _first(self.of_type(3))
        if record is None:
            return None
        return DmiChassis(
            manufacturer=record.get("Manufacturer"),
            type=record.get("Type"),
            serial_number=record.get("Serial Number"),
            boot_up_state=record.get("Boot-up State"),
            power_supply_state=record.get("Power Supply State"),
            thermal_state=record.get("Thermal State"),
            security_status=record.get("Security Status"),
        )

    def processors(self) -> tuple[DmiProcessor, ...]:
        return tuple(
            DmiProcessor(
                socket=r.get("Socket Designation"),
                manufacturer=r.get("Manufacturer"),
                version=r.get("Version"),
                status=r.get("Status"),
                core_count=_leading_int(r.get("Core Count")),
                core_enabled=_leading_int(r.get("Core Enabled")),
                thread_count=_leading_int(r.get("Thread Count")),
                max_speed_mhz=_leading_int(r.get("Max Speed")),
                current_speed_mhz=_leading_int(r.get("Current Speed")),
            )
            for r in self.of_type(4)
        )

    def memory_devices(self) -> tuple[DmiMemoryDevice, ...]:
        array_use = {r.handle.lower(): r.get("Use") for r in self.of_type(16)}
        return tuple(
            DmiMemoryDevice(
                handle=r.handle,
                locator=r.get("Locator"),
                bank_locator=r.get("Bank Locator"),
                size_bytes=_memory_size(r.get("Size")),
                size_text=r.get("Size"),
                type=r.get("Type"),
                form_factor=r.get("Form Factor"),
                speed_mts=_leading_int(r.get("Speed")),
                configured_speed_mts=_leading_int(
                    r.get("Configured Memory Speed") or r.get("Configured Clock Speed")
                ),
                manufacturer=r.get("Manufacturer"),
                serial_number=r.get("Serial Number"),
                part_number=r.get("Part Number"),
                error_information_handle=_handle_ref(r.get("Error Information Handle")),
                type_detail=r.get("Type Detail"),
                memory_technology=r.get("Memory Technology"),
                volatile_size_bytes=_memory_size(r.get("Volatile Size")),
                non_volatile_size_bytes=_memory_size(r.get("Non-Volatile Size")),
                array_use=array_use.get((r.get("Array Handle") or "").lower()),
            )
            for r in self.of_type(17)
        )

    def power_supplies(self) -> tuple[DmiPowerSupply, ...]:
        return tuple(
            DmiPowerSupply(
                name=r.get("Name"),
                location=r.get("Location"),
                manufacturer=r.get("Manufacturer"),
                serial_number=r.get("Serial Number"),
                model_part_number=r.get("Model Part Number"),
                max_power_capacity_w=_leading_int(r.get("Max Power Capacity")),
                status=r.get("Status"),
                plugged=_yes_no(r.get("Plugged")),
                hot_replaceable=_yes_no(r.get("Hot Replaceable")),
            )
            for r in self.of_type(39)
        )

    @property
    def system_boot_status(self) -> str | None:
        """Type 32 status: "No errors detected", "Firmware-detected hardware failure"..."""
        record = _first(self.of_type(32))
        return None if record is None else record.get("Status")

    def memory_error_records(self) -> tuple[DmiMemoryError, ...]:
        links: dict[str, list[str]] = {}
        for record in self.records:
            target = _handle_ref(record.get("Error Information Handle"))
            if target is not None:
                links.setdefault(target.lower(), []).append(record.handle)
        return tuple(
            DmiMemoryError(
                handle=r.handle,
                type=r.type,
                error_type=r.get("Type"),
                granularity=r.get("Granularity"),
                operation=r.get("Operation"),
                vendor_syndrome=r.get("Vendor Syndrome"),
                memory_array_address=r.get("Memory Array Address"),
                device_address=r.get("Device Address"),
                resolution=r.get("Resolution"),
                linked_from=tuple(links.get(r.handle.lower(), ())),
            )
            for r in self.of_type(18, 33)
        )


def parse_dmidecode(text: str) -> DmiDecode:
    """Parse plain `dmidecode` output (any -t selection) into records."""
    lines = text.splitlines()
    dmidecode_version: str | None = None
    smbios_version: str | None = None
    header_seen = False
    records: list[DmiRecord] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        handle = _HANDLE.fullmatch(line.strip())
        if handle is not None:
            index = _read_record(lines, index, handle, records)
            continue
        if line.startswith("Handle "):
            fail(TOOL, f"line {index + 1}: malformed record header {line.strip()[:80]!r}")
        stripped = line.strip()
        if stripped.startswith("# dmidecode "):
            dmidecode_version = stripped.removeprefix("# dmidecode ").strip()
        version = _SMBIOS_VERSION.search(stripped)
        if version is not None:
            smbios_version = version.group(1)
            header_seen = True
        if any(stripped.startswith(marker) for marker in _HEADER_MARKERS):
            header_seen = True
        index += 1
    if not records and not header_seen:
        if not text.strip():
            fail(TOOL, "empty output")
        fail(TOOL, "no 'Handle 0x..., DMI type N' records and no dmidecode header")
    return DmiDecode(dmidecode_version, smbios_version, tuple(records))


def _read_record(
    lines: list[str], start: int, handle: re.Match[str], records: list[DmiRecord]
) -> int:
    """Read one record starting at its Handle line; return the index after it."""
    index = start + 1
    if index >= len(lines) or not lines[index].strip() or lines[index][:1].isspace():
        fail(TOOL, f"line {start + 1}: record {handle.group(1)} has no title (truncated?)")
    title = lines[index].strip()
    index += 1
    fields: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    notes: list[str] = []
    current_list: str | None = None
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            break
        if _HANDLE.fullmatch(line.strip()):
            break
        if line.startswith("\t\t"):
            if current_list is None:
                notes.append(line.strip())
            else:
                lists[current_list].append(line.strip())
        elif line.startswith("\t"):
            key, sep, value = line.strip().partition(":")
            if not sep:
                notes.append(line.strip())
                current_list = None
            else:
                key = key.strip()
                fields.setdefault(key, value.strip())
                current_list = key
                lists.setdefault(key, [])
        else:
            notes.append(line.strip())
            current_list = None
        index += 1
    records.append(
        DmiRecord(
            handle=handle.group(1),
            type=int(handle.group(2)),
            size_bytes=int(handle.group(3)),
            title=title,
            fields=fields,
            lists={key: tuple(items) for key, items in lists.items() if items},
            notes=tuple(notes),
        )
    )
    return index


def _first(records: tuple[DmiRecord, ...]) -> DmiRecord | None:
    return records[0] if records else None


def _leading_int(value: str | None) -> int | None:
    """'2933 MT/s' -> 2933, '750 W' -> 750, 'Unknown' -> None."""
    if value is None:
        return None
    match = _NUMBER.match(value.strip())
    return small_int(match.group()) if match else None


def _memory_size(value: str | None) -> int | None:
    """'32 GB', '16384 MB', '129408 MB' -> bytes; 'No Module Installed' / 'Unknown' -> None."""
    if value is None:
        return None
    return binary_size(value)


def _handle_ref(value: str | None) -> str | None:
    """A handle reference, or None for 'Not Provided' / 'No Error'."""
    if value is None or not value.lower().startswith("0x"):
        return None
    return value


def _yes_no(value: str | None) -> bool | None:
    if value == "Yes":
        return True
    if value == "No":
        return False
    return None
