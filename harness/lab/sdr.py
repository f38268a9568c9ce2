"""The lab BMC's sensor data repository: power supplies a lab guest "has", as IPMI bytes.

A real BMC describes each sensor once in its Sensor Data Repository (SDR, IPMI 2.0
section 43: full sensor records) and answers Get Sensor Reading with the current value and
the asserted states. Here the states come from the lab spec (`vet_lab_guest.psu: [ok,
failed]`), so the psu stage reads a healthy or a failing PSU through the real ipmitool.
Written by hand: pyghmi only parses SDRs (as a client), and no maintained Python library
builds them; the layouts below are the spec's tables, byte for byte.

Per PSU n: `PSUn Status` (sensor type 08h Power Supply, sensor-specific states: presence,
failure, AC lost), `PSUn Input Power` (Watts) and `PSUn Input Volt` (Volts), both with
thresholds; with two PSUs or more one `PS Redundancy` sensor (generic redundancy states).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PSU_STATES", "Sensor", "SensorRepository", "psu_repository"]

#: What a lab PSU can be: healthy, failed (AC still in, no output), without AC input, or an
#: empty bay.
PSU_STATES = ("ok", "failed", "ac-lost", "absent")

BMC_ADDRESS = 0x20
SDR_VERSION = 0x51
FULL_SENSOR_RECORD = 0x01
ENTITY_POWER_SUPPLY = 0x0A
ENTITY_SYSTEM_BOARD = 0x07
SENSOR_TYPE_VOLTAGE = 0x02
SENSOR_TYPE_POWER_SUPPLY = 0x08
EVENT_THRESHOLD = 0x01
EVENT_REDUNDANCY = 0x0B
EVENT_SENSOR_SPECIFIC = 0x6F
UNIT_VOLTS = 4
UNIT_WATTS = 6
# Sensor type 08h offsets (IPMI 2.0 table 42-3) and generic redundancy offsets (table 42-2).
PRESENCE, FAILURE, AC_LOST = 0, 1, 3
FULLY_REDUNDANT, REDUNDANCY_LOST, INSUFFICIENT = 0, 1, 5
# Threshold order in Get Sensor Thresholds and the readable mask's bits.
THRESHOLDS = ("lnc", "lcr", "lnr", "unc", "ucr", "unr")
# A threshold sensor's reading state bits: at or below lnc/lcr/lnr, at or above unc/ucr/unr.
_BELOW = {"lnc": 0, "lcr": 1, "lnr": 2}
_ABOVE = {"unc": 3, "ucr": 4, "unr": 5}


@dataclass(frozen=True)
class Sensor:
    """One sensor: how the SDR describes it and what it reads now."""

    number: int
    name: str  # at most 16 characters (the SDR's ID string)
    sensor_type: int
    event_type: int
    entity: tuple[int, int]
    unit: int = 0  # 0: discrete
    multiplier: int = 1  # reading = raw * multiplier (the SDR's M; B and exponents 0)
    thresholds: tuple[tuple[str, int], ...] = ()  # raw values
    raw: int = 0  # threshold sensors: the raw reading
    states: int = 0  # discrete sensors: the asserted state bits (offsets 0-14)
    available: bool = True  # False: "reading unavailable" (an empty bay's readings)

    @property
    def is_threshold(self) -> bool:
        return self.event_type == EVENT_THRESHOLD

    def record(self, record_id: int) -> bytes:
        """The full sensor record (SDR type 01h), header included."""
        name = self.name.encode("ascii")
        if not 0 < len(name) <= 16:
            raise ValueError(f"sensor name {self.name!r} must be 1-16 ASCII characters")
        limits = dict(self.thresholds)
        readable = sum(1 << THRESHOLDS.index(key) for key in limits)
        if self.is_threshold:
            # Assertion/deassertion masks: none; bytes 19-20: readable, settable (none).
            masks = struct.pack("<HHBB", 0, 0, readable, 0)
            capabilities = 0x44  # auto re-arm, thresholds readable, no hysteresis
        else:
            all_states = 0x7FFF
            masks = struct.pack("<HHH", all_states, all_states, all_states)
            capabilities = 0x40  # auto re-arm
        units = (0, self.unit, 0)  # unsigned, no rate or modifier
        # Linear; M (10 bits) with tolerance 0; B 0 with accuracy 0; exponents 0.
        conversion = bytes([0x00, self.multiplier & 0xFF, (self.multiplier >> 2) & 0xC0,
                            0, 0, 0, 0])
        threshold_bytes = bytes(limits.get(key, 0) for key in ("unr", "ucr", "unc",
                                                                "lnr", "lcr", "lnc"))
        body = (bytes([BMC_ADDRESS, 0, self.number, self.entity[0], self.entity[1],
                       0x63,  # init: scanning, events, sensor type; scanning enabled
                       capabilities, self.sensor_type, self.event_type])
                + masks + bytes(units) + conversion
                + bytes([0x00,  # analog characteristics: none given
                         0, 0, 0, 0xFF, 0x00])  # nominal, normal max/min, sensor max/min
                + threshold_bytes + bytes([0, 0, 0, 0, 0])  # hysteresis, reserved, OEM
                + bytes([0xC0 | len(name)]) + name)
        return struct.pack("<HBBB", record_id, SDR_VERSION, FULL_SENSOR_RECORD,
                           len(body)) + body

    def reading(self) -> list[int]:
        """The Get Sensor Reading answer (after the completion code)."""
        flags = 0xC0 if self.available else 0xE0  # events and scanning on; unavailable
        if not self.is_threshold:
            return [0, flags, self.states & 0xFF, 0x80 | (self.states >> 8 & 0x7F)]
        state = 0
        for key, value in self.thresholds:
            if key in _BELOW and self.raw <= value:
                state |= 1 << _BELOW[key]
            if key in _ABOVE and self.raw >= value:
                state |= 1 << _ABOVE[key]
        return [self.raw if self.available else 0, flags, state if self.available else 0,
                0x80]

    def threshold_answer(self) -> list[int]:
        """The Get Sensor Thresholds answer: readable mask, then lnc..unr (raw)."""
        limits = dict(self.thresholds)
        return ([sum(1 << THRESHOLDS.index(key) for key in limits)]
                + [limits.get(key, 0) for key in THRESHOLDS])


@dataclass(frozen=True)
class SensorRepository:
    """The sensors in record order; record ids are 1..n."""

    sensors: tuple[Sensor, ...]

    def record(self, record_id: int) -> tuple[bytes, int] | None:
        """Record `record_id` (0: the first) and the next record's id (FFFFh after the last)."""
        index = 0 if record_id == 0 else record_id - 1
        if not 0 <= index < len(self.sensors):
            return None
        following = index + 2 if index + 1 < len(self.sensors) else 0xFFFF
        return self.sensors[index].record(index + 1), following

    def sensor(self, number: int) -> Sensor | None:
        return next((s for s in self.sensors if s.number == number), None)


def _volts(number: int, name: str, entity: tuple[int, int], value: int,
           available: bool) -> Sensor:
    return Sensor(number, name, SENSOR_TYPE_VOLTAGE, EVENT_THRESHOLD, entity, unit=UNIT_VOLTS,
                  multiplier=2, raw=value // 2, available=available,
                  thresholds=(("lcr", 90), ("lnc", 95), ("unc", 125), ("ucr", 130)))


def _watts(number: int, name: str, entity: tuple[int, int], value: int,
           available: bool) -> Sensor:
    return Sensor(number, name, SENSOR_TYPE_POWER_SUPPLY, EVENT_THRESHOLD, entity,
                  unit=UNIT_WATTS, multiplier=4, raw=value // 4, available=available,
                  thresholds=(("unc", 200), ("ucr", 225)))


def psu_repository(psus: Sequence[str]) -> SensorRepository:
    """The sensors of PSUs in these states (each one of PSU_STATES), bay 1 first."""
    sensors: list[Sensor] = []
    for bay, state in enumerate(psus, start=1):
        if state not in PSU_STATES:
            raise ValueError(f"PSU {bay} state {state!r} is not one of {', '.join(PSU_STATES)}")
        entity = (ENTITY_POWER_SUPPLY, bay)
        present = state != "absent"
        bits = ((1 << PRESENCE if present else 0) | (1 << FAILURE if state == "failed" else 0)
                | (1 << AC_LOST if state == "ac-lost" else 0))
        base = 0x30 + 4 * (bay - 1)
        sensors += [
            Sensor(base, f"PSU{bay} Status", SENSOR_TYPE_POWER_SUPPLY, EVENT_SENSOR_SPECIFIC,
                   entity, states=bits),
            _watts(base + 1, f"PSU{bay} Input Power", entity,
                   120 if state == "ok" else 0, present),
            _volts(base + 2, f"PSU{bay} Input Volt", entity,
                   0 if state == "ac-lost" else 230, present),
        ]
    if len(psus) >= 2:
        working = sum(state == "ok" for state in psus)
        redundancy = (FULLY_REDUNDANT if working == len(psus) else
                      REDUNDANCY_LOST if working else INSUFFICIENT)
        sensors.append(Sensor(0x2F, "PS Redundancy", SENSOR_TYPE_POWER_SUPPLY,
                              EVENT_REDUNDANCY, (ENTITY_SYSTEM_BOARD, 1),
                              states=1 << redundancy))
    return SensorRepository(tuple(sensors))
