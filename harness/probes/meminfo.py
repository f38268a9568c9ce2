"""/proc/meminfo -> sizes in bytes (the memory stage sizes its load from MemAvailable)."""

from __future__ import annotations

import re

from harness.probes._common import fail, small_int

TOOL = "meminfo"

_LINE = re.compile(r"(?P<key>[A-Za-z0-9_()]+):\s+(?P<value>\d+)(?:\s+(?P<unit>kB))?")


def parse_meminfo(text: str) -> dict[str, int]:
    """Every `Key: N kB` line as bytes (counts without a unit stay counts)."""
    values: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.fullmatch(line.strip())
        if match is None:
            fail(TOOL, f"line {number}: expected 'Key: value kB', got {line[:80]!r}")
        value = small_int(match["value"])
        if value is None:
            fail(TOOL, f"line {number}: unreadable number {match['value'][:40]!r}")
        values[match["key"]] = value * 1024 if match["unit"] else value
    if "MemTotal" not in values:
        fail(TOOL, "no MemTotal line (not /proc/meminfo?)")
    return values
