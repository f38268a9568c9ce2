"""`wipefs --no-act --json DEVICE`: the signatures libblkid finds on a device.

libblkid knows filesystems, partition tables (gpt, dos), LVM physical volumes
(LVM2_member), MD RAID members (linux_raid_member), ZFS pool members (zfs_member),
bcache, swap and more, so one probe covers everything the storage safety gate must
refuse to overwrite. wipefs prints nothing at all when it finds nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from harness.probes._common import ParseError

TOOL = "wipefs"


@dataclass(frozen=True)
class Signature:
    device: str
    offset: str
    type: str
    uuid: str | None = None
    label: str | None = None


def parse_wipefs(text: str) -> list[Signature]:
    """Signatures in `wipefs -n -J` output; empty output means none."""
    if not text.strip():
        return []
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(TOOL, f"output is not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("signatures"), list):
        raise ParseError(TOOL, "no 'signatures' list in the JSON output")
    found = []
    for n, item in enumerate(data["signatures"]):
        if not isinstance(item, dict):
            raise ParseError(TOOL, f"signatures[{n}] is not an object")
        kind = item.get("type")
        if not isinstance(kind, str) or not kind:
            raise ParseError(TOOL, f"signatures[{n}] has no type")
        found.append(Signature(
            device=str(item.get("device") or "?"), offset=str(item.get("offset") or "?"),
            type=kind, uuid=item.get("uuid") if isinstance(item.get("uuid"), str) else None,
            label=item.get("label") if isinstance(item.get("label"), str) else None))
    return found
