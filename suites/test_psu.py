"""PSU: the BMC's sensors (`ipmitool sdr elist`, in-band or over the network): PSU presence,
failure, lost AC, lost redundancy, sensors beyond a threshold; PSU count against the spec."""

from __future__ import annotations

import pytest

from harness.bmc_sensors import NoBmc, read_sdr
from harness.host import HostUnderTest
from harness.judge import PsuThresholds, Verdict, judge_ipmitool
from harness.probes.ipmitool import parse_ipmitool

pytestmark = [pytest.mark.stage, pytest.mark.psu]

#: Units of the PSU readings worth keeping as measurements.
READING_UNITS = ("Watts", "Volts", "Amps")


def test_power_supplies(host: HostUnderTest) -> None:
    p = host.params
    try:
        dump = read_sdr(host, p["source"], tuple(p["inband_devices"]), float(p["timeout_s"]))
    except NoBmc as exc:
        expected = host.expected.psu_count
        text = str(exc) + (f" (vet_spec.psu_count {expected} is not checked)" if expected
                           else "")
        assert not p["require_bmc"], f"psu.require_bmc: {text}"
        pytest.skip(text)
    sensors = parse_ipmitool(dump.text)
    host.record("BMC sensors", {"source": dump.source, "sensors": sensors})
    for sensor in sensors.psu_sensors:
        if sensor.reading is not None and sensor.unit in READING_UNITS:
            host.measure(f"{sensor.name} ({sensor.unit})", sensor.reading, sensor.unit or "")
    judgement = judge_ipmitool(sensors, PsuThresholds(expected_psus=host.expected.psu_count))
    host.record("PSU judgement", judgement)
    failing = [f.reason for f in judgement.findings if f.verdict is Verdict.FAILING]
    assert not failing, f"{dump.source}: " + "; ".join(failing)
