"""Driver "ipmi": the real `ipmitool` over IPMI-over-LAN (lanplus by default).

ipmitool is what operators already trust and debug with, and it knows every BMC's
quirks (cipher suites, Kg keys, privilege levels); a Python IPMI client would be
another implementation to trust. The password reaches ipmitool through its
environment (`-E`, IPMI_PASSWORD) and the Kg key likewise (`-K`, IPMI_KGKEY), so
neither ever shows in `ps`. ipmitool runs with `-v` because only then does it say
*why* a session failed (wrong password vs. no answer), which is what the operator
needs to read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from harness.models import Host
from harness.power import PowerState
from harness.power.target import BmcFailure, Target

__all__ = [
    "IpmiDriver",
    "classify_failure",
    "parse_bootdev",
    "parse_control",
    "parse_status",
]

#: ipmitool's own per-request timeout and retries; the driver retries whole commands.
_IPMITOOL_TIMEOUT_S = 1
_IPMITOOL_RETRIES = 1

_STATUS = re.compile(r"^Chassis Power is (on|off)\s*$", re.MULTILINE)
_CONTROL = re.compile(r"^Chassis Power Control: (Up/On|Down/Off|Soft|Cycle|Reset|Diag)\s*$",
                      re.MULTILINE)
_BOOTDEV = re.compile(r"^Set Boot Device to (\S+)\s*$", re.MULTILINE)
_CONTROL_FOR = {"on": "Up/On", "off": "Down/Off", "soft": "Soft", "cycle": "Cycle",
                "reset": "Reset"}

_AUTH_SIGNS = ("RAKP 2 HMAC is invalid", "unauthorized name", "invalid integrity check value",
               "RAKP 4 message has invalid integrity check", "invalid role",
               "insufficient resources for session")
_NO_ANSWER_SIGNS = ("Get Auth Capabilities error",
                    "Error issuing Get Channel Authentication Capabilities",
                    "No response from remote controller", "Insufficient resources for session")
_RAKP1_SIGN = "no response from RAKP 1 message"
_PRIVILEGE_SIGN = re.compile(r"Set Session Privilege Level to (\S+) failed")
_NOISE = ("Loading IANA PEN Registry", "Using best available cipher suite", "Running Get VSO")


def parse_status(stdout: str) -> PowerState | None:
    """`ipmitool power status` -> on/off, None if the answer is not one."""
    match = _STATUS.search(stdout)
    return None if match is None else PowerState(match.group(1))


def parse_control(stdout: str) -> str | None:
    """`ipmitool power on|off|soft|cycle|reset` -> what the BMC confirmed, e.g. 'Up/On'."""
    match = _CONTROL.search(stdout)
    return None if match is None else match.group(1)


def parse_bootdev(stdout: str) -> str | None:
    """`ipmitool chassis bootdev pxe` -> the device the BMC accepted."""
    match = _BOOTDEV.search(stdout)
    return None if match is None else match.group(1)


def _meaningful(stderr: str) -> list[str]:
    lines = []
    for raw in stderr.splitlines():
        line = raw.strip().lstrip(">").strip()
        if line and not any(line.startswith(noise) for noise in _NOISE):
            lines.append(line)
    return lines


def classify_failure(stderr: str, *, bmc: str, username: str) -> BmcFailure:
    """What a failed ipmitool run means, in the operator's words, and whether to retry."""
    lines = _meaningful(stderr)
    text = "\n".join(lines)
    lowered = text.lower()
    if any(sign.lower() in lowered for sign in _AUTH_SIGNS):
        return BmcFailure(f"the BMC {bmc} rejected the login (authentication failed): wrong "
                          f"password for user {username!r}, or no such user; check "
                          "vet_power.username and vet_power.password", transient=False)
    if _RAKP1_SIGN.lower() in lowered:
        return BmcFailure(f"the BMC {bmc} answered but never completed authentication (no "
                          f"answer to RAKP 1): usually the user {username!r} does not exist "
                          "or the password is wrong; check vet_power.username and "
                          "vet_power.password", transient=False)
    if any(sign.lower() in lowered for sign in _NO_ANSWER_SIGNS):
        return BmcFailure(f"no answer from the BMC at {bmc}/udp: it is unreachable, the "
                          "address or port is wrong, or IPMI over LAN is disabled on it",
                          transient=True)
    lookup = re.search(r"Address lookup for (\S+) failed", text)
    if lookup:
        return BmcFailure(f"cannot resolve the BMC address {lookup.group(1)!r}; check "
                          "vet_power.address", transient=False)
    privilege = _PRIVILEGE_SIGN.search(text)
    if privilege:
        return BmcFailure(f"the BMC {bmc} refused privilege level {privilege.group(1)} for "
                          f"user {username!r}; give the user that level or set "
                          "vet_power.privilege (e.g. OPERATOR)", transient=False)
    # Only the failing command's own line: with -v, ipmitool also reports optional probes
    # the BMC does not implement ("Invalid command"), which say nothing about this command.
    last = lines[-1].lower() if lines else ""
    if "invalid command" in last or "not supported" in last:
        return BmcFailure(f"the BMC {bmc} does not support this: {lines[-1]}",
                          transient=False)
    detail = "; ".join(line for line in lines if not line.startswith("Error: Unable to "
                                                                       "establish"))
    return BmcFailure(f"the BMC {bmc} answered with an error: "
                      f"{detail or (lines[-1] if lines else 'ipmitool failed silently')}",
                      transient=True)


@dataclass(frozen=True)
class _Run:
    stdout: str
    stderr: str


class IpmiDriver:
    """Power through a BMC with the real ipmitool."""

    driver = "ipmi"

    def __init__(self, host: Host) -> None:
        target = Target(host)
        self._address = target.text("address")
        self._port = target.integer("port", 623, low=1, high=65535)
        self._bmc = (f"[{self._address}]:{self._port}" if ":" in self._address
                     else f"{self._address}:{self._port}")
        target.target = f"BMC {self._bmc}"
        self._target = target
        self._username = target.text("username")
        self._password = target.secret("password")
        self._kg_key = host.power.secrets.get("kg_key")
        self._interface = target.text("interface", "lanplus")
        if self._interface not in ("lanplus", "lan"):
            raise target.error("setup", f"vet_power.interface {self._interface!r} is not an "
                                        "IPMI-over-LAN interface; write lanplus (or lan)")
        cipher = host.power.params.get("cipher_suite")
        self._cipher = None if cipher is None else target.integer("cipher_suite", 3, low=0,
                                                                  high=255)
        self._privilege = target.optional_text("privilege")

    # ------------------------------------------------------------ running ipmitool

    def argv(self, *command: str) -> list[str]:
        """ipmitool's command line; it holds no secret (they travel in the environment)."""
        argv = ["ipmitool", "-I", self._interface, "-H", self._address, "-p", str(self._port),
                "-U", self._username, "-E", "-v", "-N", str(_IPMITOOL_TIMEOUT_S),
                "-R", str(_IPMITOOL_RETRIES)]
        if self._cipher is not None:
            argv += ["-C", str(self._cipher)]
        if self._privilege:
            argv += ["-L", self._privilege]
        if self._kg_key:
            argv.append("-K")
        return [*argv, *command]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["IPMI_PASSWORD"] = self._password
        if self._kg_key:
            env["IPMI_KGKEY"] = self._kg_key
        return env

    def _run(self, action: str, *command: str, expect: re.Pattern[str]) -> _Run:
        def one_try(left: float) -> _Run:
            argv = self.argv(*command)
            executable = shutil.which("ipmitool")
            if executable is None:
                raise BmcFailure("ipmitool is not installed on this controller; install it "
                                 "(apt-get install ipmitool)", transient=False)
            try:
                done = subprocess.run([executable, *argv[1:]], env=self._env(),
                                      stdin=subprocess.DEVNULL, capture_output=True,
                                      text=True, errors="replace", timeout=left, check=False)
            except subprocess.TimeoutExpired:
                raise BmcFailure(f"no answer from the BMC at {self._bmc}/udp within "
                                 f"{left:.1f} s: it is unreachable, the address or port is "
                                 "wrong, or IPMI over LAN is disabled on it",
                                 transient=True) from None
            if done.returncode != 0:
                raise classify_failure(done.stderr, bmc=self._bmc, username=self._username)
            if not expect.search(done.stdout):
                shown = done.stdout.strip().splitlines()[-1:] or ["nothing"]
                raise BmcFailure(f"unexpected answer to `ipmitool {' '.join(command)}`: "
                                 f"{shown[0]!r}", transient=True)
            return _Run(done.stdout, done.stderr)

        return self._target.attempt(action, one_try)

    def _control(self, action: str, verb: str) -> None:
        wanted = re.compile(rf"^Chassis Power Control: {re.escape(_CONTROL_FOR[verb])}\s*$",
                            re.MULTILINE)
        self._run(action, "power", verb, expect=wanted)

    # ------------------------------------------------------------ the driver

    def status(self) -> PowerState:
        done = self._run("status", "power", "status", expect=_STATUS)
        state = parse_status(done.stdout)
        assert state is not None  # `expect` matched
        return state

    def on(self) -> None:
        self._control("on", "on")

    def off(self, *, graceful: bool = False) -> None:
        if not graceful:
            self._control("off", "off")
            return
        if self.status() is PowerState.OFF:
            return
        self._control("soft off", "soft")
        self._target.poll_until_off("soft off", lambda: self.status() is PowerState.ON)

    def cycle(self) -> None:
        # Many BMCs refuse a cycle of a chassis that is off: then it is just "on".
        if self.status() is PowerState.OFF:
            self._control("cycle", "on")
        else:
            self._control("cycle", "cycle")

    def boot_pxe(self) -> None:
        """Boot from the network next time (`chassis bootdev pxe`)."""
        self._run("bootdev pxe", "chassis", "bootdev", "pxe",
                  expect=re.compile(r"^Set Boot Device to pxe\s*$", re.MULTILINE))

