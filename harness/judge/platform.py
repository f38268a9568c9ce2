"""Judgements for the platform: BMC sensors (ipmitool), SMBIOS (dmidecode), lshw and lspci.

PSU conditions come from the probes' vocabulary (harness.probes.ipmitool.PSU_STATES); which
verdict each gets is PsuThresholds.condition_verdicts: a failed PSU, lost AC input or
insufficient power fail, lost or degraded redundancy warns. Vendor quirks are data here too:
DMI_PSU_QUIRKS says which SMBIOS PSU status words carry no information (Dell and HP report
every healthy PSU as "Present, Unknown").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.judge.core import Judgement, Reasons, Verdict
from harness.probes.dmidecode import DmiDecode
from harness.probes.ipmitool import PSU_STATES, IpmiSensor, IpmiSensors
from harness.probes.lshw import LshwReport
from harness.probes.lspci import PciDevice

CONDITION_TEXT: Mapping[str, str] = {
    "failed": "the PSU reports a failure: replace it",
    "ac-lost": "the PSU lost its AC input: check the power cord, PDU and circuit",
    "insufficient": "the remaining PSUs cannot carry the load",
    "predictive-failure": "the PSU predicts its own failure: plan a replacement",
    "ac-out-of-range": "the AC input is out of range: check the PDU and circuit",
    "config-error": "PSU configuration error (mismatched models or ratings)",
    "redundancy-lost": "power redundancy is lost: one PSU failure will take the server down",
    "redundancy-degraded": "power redundancy is degraded",
    "inactive": "the PSU is in standby: fine for a hot-spare/cold-redundant setup, check "
                "that this one is meant to be",
    "absent": "no PSU in this bay",
    "non-redundant": "the server runs without PSU redundancy",
}


def _condition_verdicts() -> dict[str, Verdict]:
    return {
        "failed": Verdict.FAILING, "ac-lost": Verdict.FAILING, "insufficient": Verdict.FAILING,
        "predictive-failure": Verdict.WARNING, "ac-out-of-range": Verdict.WARNING,
        "config-error": Verdict.WARNING, "redundancy-lost": Verdict.WARNING,
        "redundancy-degraded": Verdict.WARNING, "inactive": Verdict.WARNING,
        "absent": Verdict.WARNING, "non-redundant": Verdict.HEALTHY,
        "present": Verdict.HEALTHY, "redundant": Verdict.HEALTHY,
    }


@dataclass(frozen=True)
class PsuThresholds:
    condition_verdicts: Mapping[str, Verdict] = field(default_factory=_condition_verdicts)
    expected_psus: int | None = None  # with 1, redundancy findings are only notes


_CRITICAL = ("cr", "nr", "lcr", "ucr", "lnr", "unr")
_NON_CRITICAL = ("nc", "lnc", "unc")


def judge_ipmitool(sensors: IpmiSensors, limits: PsuThresholds | None = None) -> Judgement:
    limits = limits or PsuThresholds()
    reasons = Reasons()
    present = 0
    for sensor in sensors.sensors:
        _threshold_state(sensor, reasons)
        if not sensor.is_psu:
            continue
        conditions = sensor.conditions
        present += "present" in conditions
        for condition in conditions:
            verdict = limits.condition_verdicts.get(condition, Verdict.WARNING)
            if limits.expected_psus == 1 and condition.startswith(("redundancy", "non-red")):
                verdict = Verdict.HEALTHY
            if condition in ("present", "redundant") or (verdict is Verdict.HEALTHY
                                                         and condition not in CONDITION_TEXT):
                continue
            reasons.add(verdict, f"{_name(sensor)}: {_state_text(sensor, condition)}: "
                                 f"{CONDITION_TEXT.get(condition, condition)}")
        for state in sensor.unknown_states:
            reasons.note(f"{_name(sensor)}: state {state!r} is not in vet's PSU vocabulary "
                         "(harness/probes/ipmitool.py PSU_STATES): read it yourself")
    if limits.expected_psus is not None and present < limits.expected_psus:
        reasons.fail(f"the BMC sees {present} PSU(s) present, the spec expects "
                     f"{limits.expected_psus}")
    if not sensors.psu_sensors:
        reasons.note(f"no PSU sensor in this {sensors.format} output (by entity 10 or name)")
    if not reasons.problems:
        reasons.note(f"{len(sensors.sensors)} sensors, {len(sensors.psu_sensors)} PSU-related: "
                     "no failure, no sensor beyond a threshold")
    return reasons.judgement()


def _name(sensor: IpmiSensor) -> str:
    entity = f" (entity {sensor.entity})" if sensor.entity else ""
    return f"BMC sensor {sensor.name!r}{entity}"


def _state_text(sensor: IpmiSensor, condition: str) -> str:
    for state in sensor.states:
        lowered = state.lower()
        if PSU_STATES.get(lowered) == condition or (condition == "config-error"
                                                    and lowered.startswith("config error")):
            return state
    return condition


def _threshold_state(sensor: IpmiSensor, reasons: Reasons) -> None:
    status = (sensor.status or "").lower()
    if status not in _CRITICAL and status not in _NON_CRITICAL:
        return
    reading = "" if sensor.reading is None else f" reads {sensor.reading:g} {sensor.unit or ''}"
    text = f"{_name(sensor)}{reading.rstrip()} with status {sensor.status!r}"
    if status in _CRITICAL:
        reasons.fail(text + ": beyond its critical threshold")
    else:
        reasons.warn(text + ": beyond its non-critical threshold")


DMI_PSU_QUIRKS: Mapping[str, str] = {
    "Unknown": "Dell and HP firmware report every PSU as 'Present, Unknown' (all 100+ Dell "
               "R6xx/R7xx dumps in linuxhw/DMI do): no information, not a fault; ask the BMC",
    "Other": "the firmware gives no PSU health; ask the BMC",
}
_BAD_STATES = ("Critical", "Non-recoverable")


def judge_dmidecode(dmi: DmiDecode) -> Judgement:
    reasons = Reasons()
    for psu in dmi.power_supplies():
        name = f"SMBIOS {psu.name or psu.location or 'power supply'}"
        if not psu.present:
            reasons.note(f"{name}: {psu.status or 'no status'} (empty bay)")
            continue
        health = psu.health
        if health in _BAD_STATES:
            reasons.fail(f"{name}: status {psu.status!r}: the PSU failed or lost its input; "
                         "power redundancy is lost: replace it or restore its power")
        elif health == "Non-critical":
            reasons.warn(f"{name}: status {psu.status!r}: check it in the BMC")
        elif health is not None and health in DMI_PSU_QUIRKS:
            reasons.note(f"{name}: status {psu.status!r}: {DMI_PSU_QUIRKS[health]}")
        if psu.plugged is False:
            reasons.warn(f"{name}: present but not plugged in")
    chassis = dmi.chassis()
    if chassis is not None:
        for what, state in (("power supply", chassis.power_supply_state),
                            ("thermal", chassis.thermal_state),
                            ("boot-up", chassis.boot_up_state)):
            if state in ("Warning", *_BAD_STATES):
                reasons.warn(f"SMBIOS chassis {what} state is {state!r} (the firmware's summary "
                             "at boot): investigate in the BMC (iLO IML, iDRAC/XCC log)")
    boot = dmi.system_boot_status
    if boot is not None and boot not in ("No errors detected", "OK"):
        reasons.warn(f"SMBIOS system boot status {boot!r}: the firmware saw a problem at boot; "
                     "read the BMC event log")
    locators = {m.handle.lower(): m.locator for m in dmi.memory_devices()}
    for error in dmi.memory_error_records():
        if not error.is_error:
            continue
        where = [locators.get(h.lower()) for h in error.linked_from]
        dimms = ", ".join(w for w in where if w) or "the memory array"
        reasons.warn(f"SMBIOS memory error record {error.handle}: {error.error_type!r} "
                     f"({error.operation or 'operation unknown'}) against {dimms}: confirm with "
                     "EDAC or the BMC SEL before acting (old BIOSes leave stale records)")
    for cpu in dmi.processors():
        if cpu.populated and cpu.status is not None and "Disabled" in cpu.status:
            reasons.warn(f"SMBIOS processor {cpu.socket}: {cpu.status!r}")
    if not reasons.problems:
        installed = [m for m in dmi.memory_devices() if m.installed]
        reasons.note(f"SMBIOS: {len([p for p in dmi.processors() if p.populated])} CPU(s), "
                     f"{len(installed)} memory module(s), {len(dmi.power_supplies())} PSU "
                     "record(s); nothing reported failing")
    return reasons.judgement()


def judge_lshw(report: LshwReport) -> Judgement:
    reasons = Reasons()
    boot = report.system.boot_status
    if boot is not None and boot != "normal":
        reasons.warn(f"lshw: SMBIOS boot status {boot!r}: the firmware detected a problem at "
                     "boot; read the BMC event log (iLO IML, iDRAC SEL) before trusting it")
    for cpu in report.cpus:
        if cpu.disabled and cpu.product:
            reasons.warn(f"lshw: CPU {cpu.slot or cpu.id} ({cpu.product}) is disabled")
    if not reasons.problems:
        memory = (report.memory_total_bytes or 0) / 1024**3
        reasons.note(f"lshw: {len([c for c in report.cpus if not c.disabled])} CPU(s), "
                     f"{memory:.0f} GiB memory, {len(report.disks)} disk(s), "
                     f"{len(report.nics)} NIC(s); an inventory, nothing reported failing")
    return reasons.judgement()


_EXPRESS = re.compile(r"Express \(v\d\) (?P<type>[A-Za-z ]+?)(?:,|$| \()")
_WIDTH = re.compile(r"Width x(?P<width>\d+)")


def judge_lspci(devices: list[PciDevice]) -> Judgement:
    """Only `lspci -vv` details say anything about health: DevSta error bits and link width."""
    reasons = Reasons()
    detailed = [d for d in devices if d.details]
    for device in detailed:
        kind = next((m.group("type") for line in device.details
                     if (m := _EXPRESS.search(line))), None)
        status = next((line for line in device.details if line.startswith("DevSta:")), "")
        flags = set(status.replace("DevSta:", "").split())
        name = f"PCI {device.slot} ({device.description[:60]})"
        uncorrectable = flags & {"UncorrErr+", "NonFatalErr+", "FatalErr+"}
        if kind in ("Endpoint", "Legacy Endpoint"):
            if uncorrectable:
                reasons.warn(f"{name}: device status {' '.join(sorted(uncorrectable))}: "
                             "uncorrectable PCIe errors since reset; confirm with AER in dmesg")
            elif "CorrErr+" in flags:
                reasons.note(f"{name}: device status CorrErr+ (corrected PCIe errors)")
            _width(device, name, reasons)
        elif uncorrectable:
            shown = " ".join(sorted(flags & {"UncorrErr+", "NonFatalErr+", "FatalErr+",
                                             "CorrErr+"}))
            reasons.note(f"{name}: {kind or 'non-endpoint'} shows {shown}; such bits on "
                         "root-complex functions (IIO RAS) are often stale: confirm with AER "
                         "in dmesg before failing the box")
    if not detailed:
        reasons.note(f"lspci lists {len(devices)} PCI function(s); without -vv it is an "
                     "inventory, not a health check")
    elif not reasons.problems:
        reasons.note(f"lspci: {len(devices)} PCI function(s); no endpoint reports uncorrectable "
                     "errors or a narrowed link")
    return reasons.judgement()


def _width(device: PciDevice, name: str, reasons: Reasons) -> None:
    capable = next((line for line in device.details if line.startswith("LnkCap:")), None)
    actual = next((line for line in device.details if line.startswith("LnkSta:")), None)
    if capable is None or actual is None:
        return
    cap, sta = _WIDTH.search(capable), _WIDTH.search(actual)
    if cap is None or sta is None:
        return
    if 0 < int(sta.group("width")) < int(cap.group("width")):
        reasons.warn(f"{name}: PCIe link x{sta.group('width')} of x{cap.group('width')}: "
                     "check the slot or riser")
