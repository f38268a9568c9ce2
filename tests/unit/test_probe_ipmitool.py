"""ipmitool sdr elist / sensor parser: simulator captures, vendor layouts, bad input, fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.judge import judge_ipmitool
from harness.probes._common import ParseError
from harness.probes.ipmitool import IpmiSensor, IpmiSensors, parse_ipmitool

DATA = Path(__file__).resolve().parents[1] / "data" / "probes"


def sample(name: str) -> IpmiSensors:
    return parse_ipmitool((DATA / name).read_text(encoding="utf-8"))


def by_name(sensors: IpmiSensors, name: str) -> IpmiSensor:
    return next(s for s in sensors.sensors if s.name == name)


def test_sdr_elist_from_the_simulator() -> None:
    sensors = sample("ipmitool-sim-sdr-elist.txt")
    assert sensors.format == "sdr elist" and len(sensors.sensors) == 4
    ps2 = by_name(sensors, "PS2 Status")
    assert (ps2.sensor_id, ps2.status, ps2.entity, ps2.entity_id) == ("03h", "ok", "10.2", 10)
    assert ps2.states == ("Presence detected", "Failure detected", "Power Supply AC lost")
    assert ps2.conditions == ("present", "failed", "ac-lost") and ps2.is_psu
    redundancy = by_name(sensors, "PS Redundancy")
    assert redundancy.entity == "19.1" and redundancy.is_psu  # power unit entity, PSU name
    assert redundancy.conditions == ("redundancy-lost",)
    inlet = by_name(sensors, "Inlet Temp")
    assert (inlet.reading, inlet.unit, inlet.status) == (49.0, "degrees C", "ucr")
    assert not inlet.is_psu and inlet.states == ()
    assert [s.name for s in sensors.psu_sensors] == ["PS1 Status", "PS2 Status", "PS Redundancy"]


def test_sensor_table_decodes_raw_discrete_bits() -> None:
    sensors = sample("ipmitool-sim-sensor.txt")
    assert sensors.format == "sensor"
    ps1, ps2 = by_name(sensors, "PS1 Status"), by_name(sensors, "PS2 Status")
    assert (ps1.status, ps1.state_bits, ps1.states) == ("0x0100", 1, ("Presence detected",))
    assert ps2.state_bits == 0b1011
    assert ps2.conditions == ("present", "failed", "ac-lost")
    assert by_name(sensors, "PS Redundancy").conditions == ("redundancy-lost",)
    inlet = by_name(sensors, "Inlet Temp")
    assert (inlet.reading, inlet.unit, inlet.status) == (49.0, "degrees C", "cr")
    assert inlet.thresholds == {"lnr": None, "lcr": None, "lnc": None, "unc": 42.0,
                                "ucr": 48.0, "unr": None}


def test_hpe_reading_inside_the_state_text() -> None:
    sensors = sample("ipmitool-elist-hpe-psu-failed.txt")
    psu1 = by_name(sensors, "Power Supply 1")
    assert (psu1.reading, psu1.unit) == (0.0, "Watts")
    assert psu1.states == ("Presence detected", "Failure detected")
    supplies = by_name(sensors, "Power Supplies")
    assert supplies.conditions == ("redundancy-lost",)
    uid = by_name(sensors, "UID Light")
    assert uid.states == () and uid.reading is None and not uid.is_psu
    fan = by_name(sensors, "Fan Block 1")
    assert (fan.reading, fan.unit, fan.states) == (21.56, "percent", ("Transition to Running",))


def test_dell_healthy_layout() -> None:
    sensors = sample("ipmitool-elist-dell-healthy.txt")
    assert by_name(sensors, "PS Redundancy").conditions == ("redundant",)
    assert by_name(sensors, "Voltage 1").is_psu  # entity 10: a PSU's input voltage
    intrusion = by_name(sensors, "Intrusion Cable")
    assert intrusion.status == "ns" and intrusion.states == ("Disabled",)


def test_sdr_list_and_messages() -> None:
    text = ("Get HPM.x Capabilities request failed, compcode = c1\n"
            "PS1 Status       | 0x01              | ok\n"
            "Inlet Temp       | 23 degrees C      | ok\n")
    sensors = parse_ipmitool(text)
    assert sensors.format == "sdr list"
    assert sensors.messages == ("Get HPM.x Capabilities request failed, compcode = c1",)
    assert by_name(sensors, "Inlet Temp").reading == 23.0


def test_ac_out_of_range_but_present_keeps_its_comma() -> None:
    sensors = parse_ipmitool("PS1 Status | 60h | ok | 10.1 | Presence detected, "
                             "AC out-of-range, but present\n")
    assert sensors.sensors[0].conditions == ("present", "ac-out-of-range")


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty output"),
    ("Error: Unable to establish IPMI v2 / RMCP+ session\n", "no '|'-separated sensor lines"),
    ("a | b\n", "2 '|'-separated fields"),
    ("PS1 Status | 60h | ok | 10.1 | Presence detected\nPS2 Status | 61h | ok\n",
     "line 2: 3 fields where the sdr elist lines have 5"),
    ("PS1 Status | zz | ok | 10.1 | Presence detected\n", "not like '0Ah'"),
    ("PS1 Status | 60h | ok | ten | Presence detected\n", "not like '10.1'"),
    (" | 60h | ok | 10.1 | x\n", "without a name"),
    ("T | 23.000 | degrees C | ok | na | x | na | na | na | na\n", "expected a number or 'na'"),
])
def test_malformed_input_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_ipmitool(text)
    assert info.value.tool == "ipmitool"


def _check(text: str) -> None:
    try:
        sensors = parse_ipmitool(text)
    except ParseError as error:
        assert error.tool == "ipmitool"
        return
    judge_ipmitool(sensors)
    for sensor in sensors.sensors:
        assert isinstance(sensor.conditions, tuple) and isinstance(sensor.is_psu, bool)


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _check(text)


_FIELDS = ["PS1 Status", "60h", "0x1", "ok", "cr", "ns", "10.1", "7.1", "discrete", "0x0b00",
           "0x0100", "na", "23.000", "degrees C", "Presence detected, Failure detected",
           "0 Watts, Power Supply AC lost", "Redundancy Lost", "", "1e999", "-0x", "nan"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_FIELDS) | st.text(max_size=6), min_size=1,
                         max_size=11).map(" | ".join), max_size=6))
def test_fuzz_pipe_separated_lines(lines: list[str]) -> None:
    _check("\n".join(lines))
