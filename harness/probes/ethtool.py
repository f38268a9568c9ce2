"""`ethtool IFACE` -> EthtoolSettings and `ethtool -S IFACE` -> EthtoolStats.

`ethtool IFACE` prints "Settings for IFACE:" and tab-indented "Key: value" lines; link mode
lists continue on further lines indented past the colon. Speed is "Unknown!" while the link
is down. Without root, ethtool adds "Cannot get ..." lines and leaves some keys out: those
lines are kept as `messages`, not an error. The highest speed among the supported link
modes ("25000baseCR/Full") is what the port can do, the yardstick for "negotiated too slow".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from harness.probes._common import fail, small_int

TOOL = "ethtool"

_HEADER = re.compile(r"Settings for (?P<iface>\S+?):")
_MODE_SPEED = re.compile(r"(?P<speed>\d+)base")
_SPEED = re.compile(r"(?P<mbps>\d+)\s*Mb/s")
_STAT = re.compile(r"\s*(?P<name>[^:]+?):\s*(?P<value>-?\d+)\s*")


@dataclass(frozen=True)
class EthtoolSettings:
    interface: str
    speed_mbps: int | None
    duplex: str | None
    link_detected: bool | None
    port: str | None
    auto_negotiation: bool | None
    supported_link_modes: tuple[str, ...]
    advertised_link_modes: tuple[str, ...]
    partner_link_modes: tuple[str, ...]
    fields: Mapping[str, str]
    messages: tuple[str, ...]

    @property
    def max_supported_speed_mbps(self) -> int | None:
        """The fastest supported link mode, e.g. 10000 for '10000baseT/Full'."""
        return _fastest(self.supported_link_modes)

    @property
    def max_partner_speed_mbps(self) -> int | None:
        """The fastest mode the link partner (the switch port) advertises."""
        return _fastest(self.partner_link_modes)


@dataclass(frozen=True)
class EthtoolStats:
    """`ethtool -S`: the driver's counters, names as the driver spells them."""

    counters: Mapping[str, int]

    def errors(self) -> dict[str, int]:
        """Non-zero counters that count link-level damage (CRC, FCS, symbol, alignment...)."""
        return {name: value for name, value in self.counters.items()
                if value > 0 and _ERROR_COUNTER.search(name)}


_ERROR_COUNTER = re.compile(r"crc|fcs|symbol|align|phy_err|length_err|(?:^|_)(?:rx|tx)_errors$",
                            re.IGNORECASE)


def parse_ethtool(text: str) -> EthtoolSettings:
    """Parse `ethtool IFACE` (the settings, not -S / -i / -k)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _HEADER.fullmatch(line.strip())), None)
    if start is None:
        if not text.strip():
            fail(TOOL, "empty output")
        fail(TOOL, "no 'Settings for IFACE:' line (not `ethtool IFACE` output?)")
    header = _HEADER.fullmatch(lines[start].strip())
    assert header is not None
    fields: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    messages = [line.strip() for line in lines[:start] if line.strip()]
    current: str | None = None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        if not line[0].isspace():
            messages.append(line.strip())  # "Cannot get wake-on-lan settings: ..."
            current = None
            continue
        key, sep, value = line.strip().partition(":")
        if sep and not _is_continuation(line):
            key = key.strip()
            fields.setdefault(key, value.strip())
            lists.setdefault(key, value.split())
            current = key
        elif current is not None:
            lists[current].extend(line.split())
            fields[current] = " ".join(lists[current])
        else:
            messages.append(line.strip())
    if not fields:
        fail(TOOL, f"'Settings for {header.group('iface')}:' with no settings (truncated?)")
    return EthtoolSettings(
        interface=header.group("iface"),
        speed_mbps=_speed(fields.get("Speed")),
        duplex=_known(fields.get("Duplex")),
        link_detected=_yes_no(fields.get("Link detected")),
        port=_known(fields.get("Port")),
        auto_negotiation=_on_off(fields.get("Auto-negotiation")),
        supported_link_modes=_modes(lists.get("Supported link modes")),
        advertised_link_modes=_modes(lists.get("Advertised link modes")),
        partner_link_modes=_modes(lists.get("Link partner advertised link modes")),
        fields=fields,
        messages=tuple(messages),
    )


def parse_ethtool_stats(text: str) -> EthtoolStats:
    """Parse `ethtool -S IFACE`: "NIC statistics:" then "     name: value" lines."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        fail(TOOL, "empty output")
    if lines[0].strip() != "NIC statistics:":
        fail(TOOL, "no 'NIC statistics:' header (not `ethtool -S IFACE` output?)")
    counters: dict[str, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        match = _STAT.fullmatch(line)
        if match is None:
            fail(TOOL, f"line {number}: expected 'name: number', got {line.strip()[:80]!r}")
        value = small_int(match.group("value").lstrip("-"))
        if value is None:
            fail(TOOL, f"line {number}: counter value too long")
        counters.setdefault(match.group("name").strip(),
                            -value if match.group("value").startswith("-") else value)
    return EthtoolStats(counters)


def _is_continuation(line: str) -> bool:
    """A wrapped link-mode line: deep indentation and no 'Key:' of its own."""
    stripped = line.strip()
    return line.startswith(("\t ", "\t\t")) or (
        line.startswith(" " * 8) and "base" in stripped and ":" not in stripped)


def _fastest(modes: tuple[str, ...]) -> int | None:
    speeds = [speed for speed in map(_mode_speed, modes) if speed is not None]
    return max(speeds) if speeds else None


def _mode_speed(mode: str) -> int | None:
    match = _MODE_SPEED.match(mode)
    return small_int(match.group("speed")) if match else None


def _modes(words: list[str] | None) -> tuple[str, ...]:
    if not words:
        return ()
    return tuple(word for word in words if "base" in word)


def _speed(value: str | None) -> int | None:
    if value is None:
        return None
    match = _SPEED.fullmatch(value.strip())
    return small_int(match.group("mbps")) if match else None


def _known(value: str | None) -> str | None:
    if value is None or value.startswith("Unknown"):
        return None
    return value


def _yes_no(value: str | None) -> bool | None:
    return {"yes": True, "no": False}.get((value or "").strip().lower())


def _on_off(value: str | None) -> bool | None:
    return {"on": True, "off": False}.get((value or "").strip().lower())
