"""lspci output -> PciDevice records.

`parse_lspci_vmm` reads the machine-readable `lspci -vmm` format (with or without -nn,
with -k for the driver). `parse_lspci_nn` reads the one-line-per-device `lspci` /
`lspci -nn` format, and also `lspci -v...` where each device line is followed by
indented detail lines (kept verbatim in `details`). Plain lspci cannot split vendor from
device name, so there only `description` is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.probes._common import fail, small_int

TOOL = "lspci"

_SLOT = r"(?:[0-9a-fA-F]{1,8}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"
_SLOT_RE = re.compile(_SLOT)
_LINE = re.compile(rf"(?P<slot>{_SLOT}) (?P<cls>[^:]+?)(?: \[(?P<cls_id>[0-9a-fA-F]{{4}})\])?: "
                   rf"(?P<rest>.*)")
_NAME_ID4 = re.compile(r"(?P<name>.*?)\s*\[(?P<id>[0-9a-fA-F]{4})\]")
_IDS = re.compile(r"(?P<text>.*?)\s*\[(?P<vendor>[0-9a-fA-F]{4}):(?P<device>[0-9a-fA-F]{4})\]")
_REV = re.compile(r"\s*\(rev (?P<rev>[0-9a-fA-F]+)\)")
_PROG_IF = re.compile(r"\s*\(prog-if (?P<prog_if>[0-9a-fA-F]{2})(?: \[[^\]]*\])?\)")


@dataclass(frozen=True)
class PciDevice:
    """One PCI function. Names are None where lspci did not print them separately."""

    slot: str
    class_name: str
    class_id: str | None
    description: str
    vendor_name: str | None = None
    vendor_id: str | None = None
    device_name: str | None = None
    device_id: str | None = None
    subsystem_vendor_name: str | None = None
    subsystem_vendor_id: str | None = None
    subsystem_device_name: str | None = None
    subsystem_device_id: str | None = None
    rev: str | None = None
    prog_if: str | None = None
    driver: str | None = None
    modules: tuple[str, ...] = ()
    numa_node: int | None = None
    physical_slot: str | None = None
    details: tuple[str, ...] = ()


def parse_lspci_vmm(text: str) -> list[PciDevice]:
    """Parse `lspci -vmm [-nn] [-k]` (also `-nnmmv`): blank-line separated Key:<TAB>value blocks."""
    devices: list[PciDevice] = []
    block: list[tuple[int, str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if block:
                devices.append(_vmm_device(block))
                block = []
            continue
        key, sep, value = line.partition(":")
        if not sep or not key or key != key.strip() or " " in key:
            fail(TOOL, f"line {number}: expected 'Key:<TAB>value', got {line[:80]!r}")
        block.append((number, key, value.strip()))
    if block:
        devices.append(_vmm_device(block))
    return devices


def _vmm_device(block: list[tuple[int, str, str]]) -> PciDevice:
    fields: dict[str, str] = {}
    modules: list[str] = []
    for _number, key, value in block:
        if key == "Module":
            modules.append(value)
        else:
            fields.setdefault(key, value)
    first_line = block[0][0]
    slot = fields.get("Slot")
    if slot is None or not _SLOT_RE.fullmatch(slot):
        fail(TOOL, f"line {first_line}: device block without a valid 'Slot:' ({slot!r})")
    for required in ("Class", "Vendor", "Device"):
        if required not in fields:
            fail(TOOL, f"line {first_line}: device {slot} has no '{required}:' (truncated?)")
    class_name, class_id = _split_id(fields["Class"])
    vendor_name, vendor_id = _split_id(fields["Vendor"])
    device_name, device_id = _split_id(fields["Device"])
    svendor_name, svendor_id = _split_id(fields.get("SVendor"))
    sdevice_name, sdevice_id = _split_id(fields.get("SDevice"))
    numa = fields.get("NUMANode")
    return PciDevice(
        slot=slot,
        class_name=class_name or "",
        class_id=class_id,
        description=f"{vendor_name} {device_name}",
        vendor_name=vendor_name,
        vendor_id=vendor_id,
        device_name=device_name,
        device_id=device_id,
        subsystem_vendor_name=svendor_name,
        subsystem_vendor_id=svendor_id,
        subsystem_device_name=sdevice_name,
        subsystem_device_id=sdevice_id,
        rev=fields.get("Rev"),
        prog_if=fields.get("ProgIf"),
        driver=fields.get("Driver"),
        modules=tuple(modules),
        numa_node=small_int(numa) if numa is not None else None,
        physical_slot=fields.get("PhySlot"),
    )


def _split_id(value: str | None) -> tuple[str | None, str | None]:
    """'Intel Corporation [8086]' -> ('Intel Corporation', '8086')."""
    if value is None:
        return None, None
    match = _NAME_ID4.fullmatch(value)
    if match is None:
        return value, None
    return match.group("name"), match.group("id").lower()


def parse_lspci_nn(text: str) -> list[PciDevice]:
    """Parse one-line-per-device `lspci` / `lspci -nn`, tolerating indented -v/-k details."""
    devices: list[PciDevice] = []
    details: list[str] = []
    current: PciDevice | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if line[0].isspace():
            if current is None:
                fail(TOOL, f"line {number}: indented detail line before any device line")
            details.append(line.strip())
            continue
        match = _LINE.fullmatch(line.rstrip())
        if match is None:
            fail(TOOL, f"line {number}: expected 'SLOT CLASS: DEVICE', got {line[:80]!r}")
        if current is not None:
            devices.append(_with_details(current, details))
        details = []
        current = _nn_device(match)
    if current is not None:
        devices.append(_with_details(current, details))
    return devices


def _nn_device(match: re.Match[str]) -> PciDevice:
    rest = match.group("rest")
    prog_if = _PROG_IF.search(rest)
    if prog_if is not None:
        rest = rest[: prog_if.start()] + rest[prog_if.end() :]
    rev = _REV.search(rest)
    if rev is not None:
        rest = rest[: rev.start()] + rest[rev.end() :]
    rest = rest.strip()
    ids = _IDS.fullmatch(rest)
    cls_id = match.group("cls_id")
    return PciDevice(
        slot=match.group("slot"),
        class_name=match.group("cls").strip(),
        class_id=cls_id.lower() if cls_id else None,
        description=ids.group("text") if ids else rest,
        vendor_id=ids.group("vendor").lower() if ids else None,
        device_id=ids.group("device").lower() if ids else None,
        rev=rev.group("rev") if rev else None,
        prog_if=prog_if.group("prog_if") if prog_if else None,
    )


def _with_details(device: PciDevice, details: list[str]) -> PciDevice:
    """Fill driver, modules, NUMA node and subsystem from `lspci -v/-k` detail lines."""
    if not details:
        return device
    values: dict[str, str] = {}
    for line in details:
        key, sep, value = line.partition(":")
        if sep:
            values.setdefault(key.strip(), value.strip())
    subsystem = _IDS.fullmatch(values.get("Subsystem", ""))
    numa = values.get("NUMA node")
    modules = values.get("Kernel modules")
    return PciDevice(
        slot=device.slot,
        class_name=device.class_name,
        class_id=device.class_id,
        description=device.description,
        vendor_id=device.vendor_id,
        device_id=device.device_id,
        subsystem_vendor_name=None,
        subsystem_vendor_id=subsystem.group("vendor").lower() if subsystem else None,
        subsystem_device_name=(subsystem.group("text") if subsystem else values.get("Subsystem")),
        subsystem_device_id=subsystem.group("device").lower() if subsystem else None,
        rev=device.rev,
        prog_if=device.prog_if,
        driver=values.get("Kernel driver in use"),
        modules=tuple(m.strip() for m in modules.split(",")) if modules else (),
        numa_node=small_int(numa) if numa is not None else None,
        physical_slot=values.get("Physical Slot"),
        details=tuple(details),
    )
