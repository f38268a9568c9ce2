"""SMBIOS type 39 (System Power Supply) structures for a lab guest's PSUs.

The spec stage counts PSUs from dmidecode (SMBIOS), the psu stage from the BMC: a lab
guest with PSUs must show them in both, or vet_spec.psu_count could not be checked. QEMU
has no option for type 39, but loads any structure from a file (`-smbios file=`); this
module writes one file per PSU. By hand: SMBIOS structures are a fixed byte layout
(DMTF DSP0134 section 7.40) that no maintained Python library builds.
"""

from __future__ import annotations

import struct
from pathlib import Path

__all__ = ["power_supply", "psu_file", "write_power_supplies"]

TYPE_POWER_SUPPLY = 39
#: Handles of QEMU's own structures stay below 0x7F00 in steps of 0x100 per type; 0x2700
#: (type 39's slot by that scheme) is unused by QEMU.
HANDLE_BASE = 0x2700
_UNKNOWN_HANDLE = 0xFFFF
# Power Supply Characteristics (word at 0Eh): type, status, input range, plug, presence.
_SWITCHING = 0b100 << 10
_STATUS = {"ok": 0b011, "failed": 0b101, "ac-lost": 0b101, "absent": 0b010}  # OK, critical
_AUTO_SWITCH = 0b0100 << 3
_UNPLUGGED, _PRESENT, _HOT_REPLACEABLE = 1 << 2, 1 << 1, 1 << 0


def power_supply(bay: int, state: str, capacity_w: int = 800) -> bytes:
    """One type 39 structure for the PSU in `bay` (1-based) in `state` (lab PSU states)."""
    characteristics = (_SWITCHING | _STATUS[state] << 7 | _AUTO_SWITCH | _HOT_REPLACEABLE
                       | (0 if state == "absent" else _PRESENT)
                       | (_UNPLUGGED if state == "ac-lost" else 0))
    strings = [f"Bay {bay}", f"PSU{bay}", "vet-lab", f"VETPSU-{bay:04d}", "VL-PSU-800", "1.0"]
    # Location, name, manufacturer, serial, asset tag (none), part number, revision.
    formatted = struct.pack("<BBHBBBBBBBBHHHHH", TYPE_POWER_SUPPLY, 0x16, HANDLE_BASE + bay,
                            1, 1, 2, 3, 4, 0, 5, 6, capacity_w, characteristics,
                            _UNKNOWN_HANDLE, _UNKNOWN_HANDLE, _UNKNOWN_HANDLE)
    return formatted + b"".join(s.encode("ascii") + b"\0" for s in strings) + b"\0"


def psu_file(guest_dir: Path, bay: int) -> Path:
    return guest_dir / f"smbios-psu{bay}.bin"


def write_power_supplies(guest_dir: Path, psus: tuple[str, ...] | list[str]) -> list[Path]:
    """One file per PSU for QEMU's `-smbios file=` (one structure per file, as QEMU wants)."""
    guest_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for bay, state in enumerate(psus, start=1):
        path = psu_file(guest_dir, bay)
        path.write_bytes(power_supply(bay, state))
        paths.append(path)
    return paths
