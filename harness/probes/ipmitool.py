"""`ipmitool sdr elist`, `ipmitool sensor` (and `sdr list`) -> IpmiSensors.

The format is told from the first '|' line: 5 fields is `sdr elist` (name, id, status,
entity, description), 10 is `sensor` (name, reading, unit, status, six thresholds), 3 is
`sdr list`. Lines without '|' (ipmitool's own warnings) are kept as `messages`.

PSU health is discrete: `sdr elist` prints the asserted states as text ("Presence detected,
Failure detected"), `sensor` prints the raw state bits (`0x0100`: offsets 0-7 in the first
byte, 8-14 in the second). Both map to conditions through PSU_STATES and the bit tables
below: the vocabulary of ipmitool's own strings for sensor type 08h (Power Supply), 09h
(Power Unit), generic "redundancy" (event type 0Bh) and presence states. New vendor wording is
one more entry there. HPE iLO puts the reading among the states ("0 Watts, Presence
detected, Failure detected"): a part that is a number and a unit is read as the reading.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from harness.probes._common import fail

TOOL = "ipmitool"

# Lower-cased ipmitool state text -> condition (what the judge maps to a verdict).
PSU_STATES: Mapping[str, str] = {
    "presence detected": "present",
    "device present": "present",
    "entity present": "present",
    "device absent": "absent",
    "entity absent": "absent",
    "failure detected": "failed",
    "predictive failure": "predictive-failure",
    "power supply ac lost": "ac-lost",
    "ac lost or out-of-range": "ac-lost",
    "ac lost": "ac-lost",
    "ac out-of-range, but present": "ac-out-of-range",
    "config error": "config-error",
    "power supply inactive": "inactive",
    "fully redundant": "redundant",
    "redundancy lost": "redundancy-lost",
    "redundancy degraded": "redundancy-degraded",
    "redundancy degraded from fully redundant": "redundancy-degraded",
    "redundancy degraded from non-redundant": "redundancy-degraded",
    "non-redundant: sufficient from redundant": "redundancy-lost",
    "non-redundant: sufficient from insufficient": "non-redundant",
    "non-redundant: insufficient resources": "insufficient",
}
# Sensor type 08h (Power Supply) state offsets, for `ipmitool sensor`'s raw bits.
PSU_STATUS_BITS: tuple[str, ...] = (
    "Presence detected", "Failure detected", "Predictive failure", "Power Supply AC lost",
    "AC lost or out-of-range", "AC out-of-range, but present", "Config Error",
    "Power Supply Inactive",
)
# Generic event type 0Bh (redundancy) offsets.
REDUNDANCY_BITS: tuple[str, ...] = (
    "Fully Redundant", "Redundancy Lost", "Redundancy Degraded",
    "Non-Redundant: Sufficient from Redundant", "Non-Redundant: Sufficient from Insufficient",
    "Non-Redundant: Insufficient Resources", "Redundancy Degraded from Fully Redundant",
    "Redundancy Degraded from Non-Redundant",
)
POWER_SUPPLY_ENTITY = 10  # IPMI entity ID 0Ah
PSU_NAME = re.compile(r"\b(?:PSU?\s*\d*|PS\d+\w*|PWS\w*|Power\s*Suppl(?:y|ies)|PSU?\s*Redundancy)",
                      re.IGNORECASE)
THRESHOLD_NAMES = ("lnr", "lcr", "lnc", "unc", "ucr", "unr")
_READING = re.compile(r"(?P<number>-?\d+(?:\.\d+)?)\s+(?P<unit>\S.*)")
_HEX_ID = re.compile(r"[0-9A-Fa-f]{1,4}h")
_ENTITY = re.compile(r"\d{1,3}\.\d{1,3}")
_FORMATS = {5: "sdr elist", 10: "sensor", 3: "sdr list"}


@dataclass(frozen=True)
class IpmiSensor:
    """One sensor; for `sensor` output `status` is the threshold state or the raw bits."""

    name: str
    sensor_id: str | None
    status: str | None
    entity: str | None
    reading: float | None
    unit: str | None
    states: tuple[str, ...]
    thresholds: Mapping[str, float | None]
    state_bits: int | None = None

    @property
    def entity_id(self) -> int | None:
        return int(self.entity.split(".")[0]) if self.entity else None

    @property
    def is_psu(self) -> bool:
        """A power-supply sensor: entity 10 (Power Supply) or a PSU-like name."""
        return self.entity_id == POWER_SUPPLY_ENTITY or PSU_NAME.search(self.name) is not None

    @property
    def conditions(self) -> tuple[str, ...]:
        """Known PSU/redundancy conditions of the asserted states (unknown wording skipped)."""
        found = []
        for state in self.states:
            text = state.strip().lower()
            condition = PSU_STATES.get(text)
            if condition is None and text.startswith("config error"):
                condition = "config-error"
            if condition is not None and condition not in found:
                found.append(condition)
        return tuple(found)

    @property
    def unknown_states(self) -> tuple[str, ...]:
        return tuple(s for s in self.states if s.strip().lower() not in PSU_STATES
                     and not s.strip().lower().startswith("config error"))


@dataclass(frozen=True)
class IpmiSensors:
    format: str
    sensors: tuple[IpmiSensor, ...]
    messages: tuple[str, ...]

    @property
    def psu_sensors(self) -> tuple[IpmiSensor, ...]:
        return tuple(sensor for sensor in self.sensors if sensor.is_psu)


def parse_ipmitool(text: str) -> IpmiSensors:
    """Parse `ipmitool sdr elist`, `ipmitool sensor` or `ipmitool sdr list` output."""
    if not text.strip():
        fail(TOOL, "empty output")
    expected: int | None = None
    sensors: list[IpmiSensor] = []
    messages: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if "|" not in line:
            if line.strip():
                messages.append(line.strip())
            continue
        fields = [part.strip() for part in line.split("|")]
        if expected is None:
            if len(fields) not in _FORMATS:
                fail(TOOL, f"line {number}: {len(fields)} '|'-separated fields; expected 5 "
                           "(sdr elist), 10 (sensor) or 3 (sdr list)")
            expected = len(fields)
        elif len(fields) != expected:
            fail(TOOL, f"line {number}: {len(fields)} fields where the {_FORMATS[expected]} "
                       f"lines have {expected} (truncated?)")
        if not fields[0]:
            fail(TOOL, f"line {number}: sensor without a name")
        if expected == 5:
            sensors.append(_elist(fields, number))
        elif expected == 10:
            sensors.append(_sensor(fields, number))
        else:
            sensors.append(_list(fields))
    if expected is None:
        fail(TOOL, "no '|'-separated sensor lines (not ipmitool sdr/sensor output?)")
    return IpmiSensors(_FORMATS[expected], tuple(sensors), tuple(messages))


def _elist(fields: list[str], number: int) -> IpmiSensor:
    name, sensor_id, status, entity, description = fields
    if not _HEX_ID.fullmatch(sensor_id):
        fail(TOOL, f"line {number}: sensor id {sensor_id[:20]!r} is not like '0Ah'")
    if entity and not _ENTITY.fullmatch(entity):
        fail(TOOL, f"line {number}: entity {entity[:20]!r} is not like '10.1'")
    reading, unit, states = _description(description)
    return IpmiSensor(name=name, sensor_id=sensor_id, status=status or None,
                      entity=entity or None, reading=reading, unit=unit, states=states,
                      thresholds={})


def _description(description: str) -> tuple[float | None, str | None, tuple[str, ...]]:
    reading: float | None = None
    unit: str | None = None
    states: list[str] = []
    for part in (p.strip() for p in description.split(",")):
        if not part or part.lower() == "no reading":
            continue
        match = _READING.fullmatch(part)
        if match is not None and reading is None and len(match.group("number")) < 40:
            reading, unit = float(match.group("number")), match.group("unit")
            continue
        states.append(part)
    # "AC out-of-range, but present" contains the separator: join it back.
    joined: list[str] = []
    for state in states:
        if state.lower() == "but present" and joined:
            joined[-1] = f"{joined[-1]}, {state}"
        else:
            joined.append(state)
    return reading, unit, tuple(joined)


def _sensor(fields: list[str], number: int) -> IpmiSensor:
    name, reading_text, unit, status = fields[:4]
    thresholds = {key: _number(value, number) for key, value in zip(THRESHOLD_NAMES, fields[4:],
                                                                       strict=True)}
    reading: float | None = None
    bits: int | None = None
    states: tuple[str, ...] = ()
    if unit == "discrete":
        if re.fullmatch(r"0x[0-9a-fA-F]{4}", status):
            raw = int(status, 16)
            bits = (raw >> 8) | ((raw & 0x7F) << 8)  # offsets 0-7, then 8-14
            states = _decode_bits(name, bits)
    else:
        reading = _number(reading_text, number)
    return IpmiSensor(name=name, sensor_id=None, status=status or None, entity=None,
                      reading=reading, unit=None if unit in ("", "discrete") else unit,
                      states=states, thresholds=thresholds, state_bits=bits)


def _decode_bits(name: str, bits: int) -> tuple[str, ...]:
    """Raw discrete bits in words, for the sensor kinds known by name (PSU, redundancy)."""
    if "redundan" in name.lower():
        table = REDUNDANCY_BITS
    elif PSU_NAME.search(name):
        table = PSU_STATUS_BITS
    else:
        return ()
    return tuple(text for offset, text in enumerate(table) if bits >> offset & 1)


def _list(fields: list[str]) -> IpmiSensor:
    name, value, status = fields
    reading, unit, states = _description(value)
    return IpmiSensor(name=name, sensor_id=None, status=status or None, entity=None,
                      reading=reading, unit=unit, states=states, thresholds={})


def _number(text: str, number: int) -> float | None:
    if text in ("na", "", "N/A"):
        return None
    if len(text) > 40:
        fail(TOOL, f"line {number}: expected a number or 'na', got {text[:40]!r}...")
    try:
        return float(text)
    except ValueError:
        if text.startswith("0x"):
            return None  # a discrete sensor's raw reading
        fail(TOOL, f"line {number}: expected a number or 'na', got {text!r}")
