"""A host's BMC sensor list (`ipmitool sdr elist`), in-band or over the network.

In-band: the host has an IPMI device (/dev/ipmi0...), and ipmitool runs there through the
host's channel, with no credentials. Over the network: the controller runs ipmitool
against the BMC named by the host's `vet_power` (driver ipmi), with the power driver's own
command line (interface, port, cipher suite, privilege) and the password in ipmitool's
environment (`-E`), never in argv, logs or evidence. A host with neither has no BMC vet can
read; a BMC that answers but keeps no sensor repository (a lab BMC without
`vet_lab_guest.psu`) likewise.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass

from harness.errors import VetError
from harness.host import HostUnderTest
from harness.power.ipmi import IpmiDriver, classify_failure
from harness.power.target import BmcFailure, Target

DEFAULT_DEVICES = ("/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0")
#: ipmitool's words for a BMC without a Sensor Data Repository.
_NO_SDR = re.compile(r"Error obtaining SDR info|Unable to open SDR for reading|"
                     r"SDR Repository .*not supported", re.IGNORECASE)


class NoBmc(Exception):
    """No BMC sensor data can be read for this host; the text says why (a skip reason)."""


@dataclass(frozen=True)
class SensorDump:
    text: str  # ipmitool's stdout
    source: str  # where it came from, for messages: "in-band (/dev/ipmi0)", "BMC 10.0.0.5:623"


def read_sdr(host: HostUnderTest, source: str = "auto",
             devices: tuple[str, ...] | list[str] = DEFAULT_DEVICES,
             timeout_s: float = 60.0) -> SensorDump:
    """`ipmitool sdr elist` from the host's BMC; NoBmc (with the reason) if there is none."""
    if source not in ("auto", "inband", "lan"):
        raise VetError(f"host {host.name}: psu.source {source!r} is not one of auto, "
                               "inband, lan")
    device = _inband_device(host, devices) if source in ("auto", "inband") else None
    if device is not None:
        host.require("ipmitool")
        result = host.run("ipmitool sdr elist", timeout=timeout_s)
        if result.ok:
            return SensorDump(result.stdout, f"in-band ({device})")
        if _NO_SDR.search(result.stderr + result.stdout):
            raise NoBmc(f"the BMC behind {device} keeps no sensor data repository "
                        f"({_last_line(result.stderr)}): no PSU sensors to read")
        raise NoBmc(f"in-band ipmitool on {device} failed (exit {result.exit_status}: "
                    f"{_last_line(result.stderr or result.stdout)}); load the ipmi_si and "
                    "ipmi_devintf modules, or set psu.source: lan")
    if source == "inband":
        raise NoBmc(f"no IPMI device on the host ({', '.join(devices) or 'none listed'}): "
                    "no in-band BMC (psu.source is inband)")
    if host.entry.power.driver != "ipmi":
        where = "" if source == "lan" else f"no IPMI device on the host ({', '.join(devices)}) "
        raise NoBmc(f"no BMC: {where}and vet_power's driver is {host.entry.power.driver!r}, "
                    "not ipmi, so there is no BMC address to read sensors from")
    return _over_lan(host, timeout_s)


def _inband_device(host: HostUnderTest, devices: tuple[str, ...] | list[str]) -> str | None:
    if not devices:
        return None
    listed = " ".join(shlex.quote(d) for d in devices)
    found = host.run(f"for d in {listed}; do [ -c \"$d\" ] || [ -e \"$d\" ] && echo \"$d\"; "
                     "done; true", timeout=30, attach=False)
    names = found.stdout.split()
    return names[0] if names else None


def _over_lan(host: HostUnderTest, timeout_s: float) -> SensorDump:
    driver = IpmiDriver(host.entry)  # checks the vet_power parameters, names a bad one
    target = Target(host.entry)
    password = target.secret("password")
    # The power driver's command line, less -v: verbose `sdr elist` prints another format.
    argv = [arg for arg in driver.argv("sdr", "elist") if arg != "-v"]
    bmc = f"{target.params.get('address')}:{target.params.get('port', 623)}"
    executable = shutil.which("ipmitool")
    if executable is None:
        raise NoBmc("ipmitool is not installed on this controller (apt-get install ipmitool): "
                    f"cannot read the BMC {bmc} over the network")
    env = dict(os.environ, IPMI_PASSWORD=password)
    command = " ".join(shlex.quote(a) for a in argv)
    host.events.emit("controller", "command-start", command=command, stage=host.stage)

    def one_try(left: float) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run([executable, *argv[1:]], env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, errors="replace",
                                  timeout=left, check=False)
        except subprocess.TimeoutExpired:
            raise BmcFailure(f"no answer from the BMC at {bmc}/udp within {left:.1f} s",
                             transient=True) from None
        if done.returncode != 0 and _NO_SDR.search(done.stderr + done.stdout):
            return done  # an answer: this BMC has no sensor repository; do not retry
        if done.returncode != 0:
            raise classify_failure(done.stderr, bmc=bmc, username=str(
                target.params.get("username")))
        return done

    started = time.monotonic()
    done = target.attempt("sdr elist", one_try, timeout_s=timeout_s)
    host.events.emit("controller", "command-end", exit_status=done.returncode,
                     duration_s=round(time.monotonic() - started, 3))
    host.evidence.attach(f"$ {command}", f"$ {command}   (on the controller; password in "
                         f"IPMI_PASSWORD)\n# exit status {done.returncode}\n--- stdout ---\n"
                         f"{done.stdout}--- stderr ---\n{done.stderr}")
    if done.returncode != 0:
        raise NoBmc(f"the BMC at {bmc} answers IPMI but keeps no sensor data repository "
                    f"({_last_line(done.stderr)}): no PSU sensors to read")
    return SensorDump(done.stdout, f"BMC {bmc} over the network")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"
