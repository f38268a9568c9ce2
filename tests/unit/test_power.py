"""Power drivers without processes: ipmitool answers, parameters, manual and wol limits."""

from __future__ import annotations

from typing import Any

import pytest

from harness.models import Connection, Host, PowerConfig
from harness.power import PowerConfigError, PowerDriver, PowerError, PowerState, power_driver
from harness.power.ipmi import (
    IpmiDriver,
    classify_failure,
    parse_bootdev,
    parse_control,
    parse_status,
)
from harness.power.target import BmcFailure, Target

# What ipmitool 1.8.19 printed here (with -v) against the pyghmi lab BMC.
WRONG_PASSWORD = ("Loading IANA PEN Registry...\nUsing best available cipher suite 3\n\n"
                  "> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ "
                  "session\n")
UNKNOWN_USER = ("Loading IANA PEN Registry...\nUsing best available cipher suite 3\n\n"
                + "> Error: no response from RAKP 1 message\n" * 4
                + "Set Session Privilege Level to ADMINISTRATOR failed\n"
                  "Error: Unable to establish IPMI v2 / RMCP+ session\n")
NO_ANSWER = ("Loading IANA PEN Registry...\nGet Auth Capabilities error\nError issuing Get "
             "Channel Authentication Capabilities request\nError: Unable to establish IPMI "
             "v2 / RMCP+ session\n")
# What real BMCs answer (ipmitool lanplus.c wording).
UNAUTHORIZED_NAME = ("> RAKP 2 message indicates an error : unauthorized name\n"
                     "Error: Unable to establish IPMI v2 / RMCP+ session\n")
NO_LOOKUP = ("Address lookup for bmc.invalid failed\nCould not open socket!\n"
             "Error: Unable to establish IPMI v2 / RMCP+ session\n")
BUSY = "Set Chassis Power Control to Up/On failed: Node busy\n"


def host(driver: str, params: dict[str, Any] | None = None,
         secrets: dict[str, str] | None = None) -> Host:
    return Host(name="node01", connection=Connection(kind="local"),
                power=PowerConfig(driver=driver, params=params or {}, secrets=secrets or {}))


def test_parse_status_and_controls() -> None:
    assert parse_status("Chassis Power is on\n") is PowerState.ON
    assert parse_status("Chassis Power is off\n") is PowerState.OFF
    assert parse_status("Chassis Power is unknown\n") is None
    assert parse_status("") is None
    assert parse_control("Chassis Power Control: Up/On\n") == "Up/On"
    assert parse_control("Chassis Power Control: Down/Off\n") == "Down/Off"
    assert parse_control("Chassis Power Control: Soft\n") == "Soft"
    assert parse_control("Chassis Power Control: Cycle\n") == "Cycle"
    assert parse_control("Chassis Power Control: Reset\n") == "Reset"
    assert parse_control("Chassis Power is on\n") is None
    assert parse_bootdev("Set Boot Device to pxe\n") == "pxe"
    assert parse_bootdev("Error setting Chassis Boot Parameter 5\n") is None


@pytest.mark.parametrize(("stderr", "words", "transient"), [
    (WRONG_PASSWORD, ("authentication failed", "password"), False),
    (UNAUTHORIZED_NAME, ("authentication failed", "username"), False),
    (UNKNOWN_USER, ("RAKP 1", "does not exist"), False),
    (NO_ANSWER, ("no answer from the BMC at 10.0.0.5:623/udp",), True),
    (NO_LOOKUP, ("cannot resolve the BMC address 'bmc.invalid'",), False),
    ("Set Session Privilege Level to ADMINISTRATOR failed\n",
     ("refused privilege level ADMINISTRATOR", "vet_power.privilege"), False),
    (BUSY, ("answered with an error", "Node busy"), True),
    ("", ("ipmitool failed silently",), True),
])
def test_classify_failure(stderr: str, words: tuple[str, ...], transient: bool) -> None:
    failure = classify_failure(stderr, bmc="10.0.0.5:623", username="admin")
    for word in words:
        assert word in failure.what
    assert failure.transient is transient
    assert "Loading IANA" not in failure.what


def test_ipmi_argv_holds_no_secret() -> None:
    driver = IpmiDriver(host("ipmi", {"address": "10.0.0.5", "username": "admin",
                                      "cipher_suite": 17, "privilege": "OPERATOR"},
                             {"password": "pw-123456", "kg_key": "kg-abcdef"}))
    argv = driver.argv("power", "status")
    assert "pw-123456" not in " ".join(argv) and "kg-abcdef" not in " ".join(argv)
    assert argv[:9] == ["ipmitool", "-I", "lanplus", "-H", "10.0.0.5", "-p", "623", "-U",
                        "admin"]
    assert "-E" in argv and "-K" in argv
    assert argv[argv.index("-C") + 1] == "17" and argv[argv.index("-L") + 1] == "OPERATOR"
    assert argv[-2:] == ["power", "status"]


@pytest.mark.parametrize(("params", "secrets", "words"), [
    ({"username": "admin"}, {"password": "x"}, "vet_power.address is missing"),
    ({"address": "b", "username": "admin"}, {}, "vet_power.password is missing"),
    ({"address": "b", "username": "admin", "timeout_s": 0}, {"password": "x"},
     "vet_power.timeout_s is 0; write a number of seconds greater than 0"),
    ({"address": "b", "username": "admin", "port": 70000}, {"password": "x"},
     "vet_power.port is 70000; write a whole number from 1 to 65535"),
    ({"address": "b", "username": "admin", "interface": "open"}, {"password": "x"},
     "'open' is not an IPMI-over-LAN interface"),
])
def test_ipmi_bad_parameters(params: dict[str, Any], secrets: dict[str, str],
                             words: str) -> None:
    with pytest.raises(PowerError) as caught:
        power_driver(host("ipmi", params, secrets))
    assert words in str(caught.value) and "host node01" in str(caught.value)
    assert "x'" not in str(caught.value)


def test_unknown_driver_and_redfish_tls_conflict() -> None:
    with pytest.raises(PowerConfigError, match="'ilo' is not a power driver vet has"):
        power_driver(host("ilo"))
    with pytest.raises(PowerConfigError, match="both ca_file and verify_tls: false"):
        power_driver(host("redfish", {"url": "https://b", "username": "u", "ca_file": "/x",
                                      "verify_tls": False}, {"password": "p"}))


def test_retries_transient_failures_then_names_everything() -> None:
    target = Target(host("qemu", {"qmp": "/run/x.sock", "timeout_s": 0.6}),
                    "QMP socket /run/x.sock")
    tries: list[float] = []

    def flaky(left: float) -> str:
        tries.append(left)
        if len(tries) < 2:
            raise BmcFailure("busy", transient=True)
        return "done"

    assert target.attempt("status", flaky) == "done"
    assert len(tries) == 2 and all(0 < t <= 0.6 for t in tries)

    def broken(_left: float) -> str:
        raise BmcFailure("socket gone", transient=True)

    with pytest.raises(PowerError) as caught:
        target.attempt("on", broken)
    assert str(caught.value).startswith("host node01: qemu power on via QMP socket "
                                        "/run/x.sock failed: socket gone (still failing after ")

    calls = 0

    def fatal(_left: float) -> str:
        nonlocal calls
        calls += 1
        raise BmcFailure("refused", transient=False)

    with pytest.raises(PowerError, match=r"failed: refused$"):
        target.attempt("off", fatal)
    assert calls == 1


def test_manual_asks_the_injected_operator() -> None:
    asked: list[str] = []
    driver = power_driver(host("manual", {"instructions": "rack 4, slot 12"}), ask=asked.append)
    assert isinstance(driver, PowerDriver) and driver.driver == "manual"
    driver.on()
    driver.off()
    driver.off(graceful=True)
    driver.cycle()
    assert asked[0] == "host node01: power the server ON now (rack 4, slot 12)"
    assert "OFF now" in asked[1] and "shut the server down" in asked[2]
    assert "power-cycle" in asked[3]
    with pytest.raises(PowerError, match="manual power status is unknown"):
        driver.status()
    assert len(asked) == 4


def test_manual_passes_on_the_operators_refusal() -> None:
    def refuse(_message: str) -> None:
        raise PowerError("operator said no")

    with pytest.raises(PowerError, match="operator said no"):
        power_driver(host("manual"), ask=refuse).on()


def test_wol_can_only_switch_on() -> None:
    driver = power_driver(host("wol", {"mac": "52:54:00:ab:01:02"}))
    for call, action in ((driver.off, "off"), (driver.cycle, "cycle"),
                         (driver.status, "status")):
        with pytest.raises(PowerError) as caught:
            call()
        assert f"host node01: wol power {action} is not possible" in str(caught.value)
    with pytest.raises(PowerError, match="cannot read the power state, it is unknown"):
        driver.status()
    with pytest.raises(PowerConfigError, match=r"vet_power\.mac 'nope' is not a MAC address"):
        power_driver(host("wol", {"mac": "nope"}))
