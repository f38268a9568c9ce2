"""Fault matrix, BMC rows (docs/RELIABILITY.md), without QEMU.

Two broken BMCs: nothing listening on the port (unreachable), and the lab's own IPMI BMC
(harness.lab.bmc, a real RMCP+ server) whose guest's QMP socket does not exist, so it
answers every power command with completion code 0xC0 "node busy".

- The ipmi driver retries with exponential backoff while the failure may pass, then
  gives up within its bound (vet_power.timeout_s) with one PowerError that names the
  host, the BMC and what it answered, and never the password.
- In a run, that is an infrastructure failure, not a hardware verdict: the host fixture
  cannot boot the host, so its first stage is an *error* (Allure: broken), never a
  *failed* test; the host goes to Failed with the reason, its event log is kept, and no
  stage ran on it.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.events import read_events
from harness.models import Connection, Host, PowerConfig
from harness.power import PowerError, power_driver
from harness.store import Store
from tests.fixtures.lab_bmc import RunningBmc, start_bmc

pytestmark = pytest.mark.faults

PASSWORD = "faults-bmc-pass"
TIMEOUT_S = 4.0
#: One ipmitool run may still be waiting for its answer when the bound is reached.
OVERRUN_S = 3.0


def dead_udp_port() -> int:
    """A loopback UDP port nobody listens on (ipmitool gets no answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def busy_bmc(tmp_path: Path) -> Iterator[RunningBmc]:
    """The lab BMC in front of a guest that is not there: every power command fails."""
    password_file = tmp_path / "bmc.pass"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    with start_bmc("harness.lab.bmc",
                   ["--name", "node07", "--qmp", str(tmp_path / "no-guest.sock"),
                    "--address", "127.0.0.1", "--port", "0", "--username", "admin",
                    "--password-file", str(password_file)], tmp_path / "bmc.log") as bmc:
        yield bmc


def ipmi_host(port: int) -> Host:
    return Host(name="node07", connection=Connection(kind="local"),
                power=PowerConfig(driver="ipmi",
                                  params={"address": "127.0.0.1", "port": port,
                                          "username": "admin", "timeout_s": TIMEOUT_S},
                                  secrets={"password": PASSWORD}))


def power_on_fails(port: int) -> tuple[str, float, int]:
    """Power on through the ipmi driver; (the error, seconds it took, tries it made)."""
    driver = power_driver(ipmi_host(port))
    started = time.monotonic()
    with pytest.raises(PowerError) as err:
        driver.on()
    took = time.monotonic() - started
    message = str(err.value)
    tries = re.search(r"still failing after (\d+) tries in 4 s", message)
    assert tries is not None, message
    assert message.startswith(f"host node07: ipmi power on via BMC 127.0.0.1:{port} failed: ")
    assert PASSWORD not in message
    return message, took, int(tries.group(1))


def test_unreachable_bmc_is_retried_then_fails_within_the_bound() -> None:
    message, took, tries = power_on_fails(dead_udp_port())
    assert "no answer from the BMC" in message, message
    assert took < TIMEOUT_S + OVERRUN_S, f"took {took:.1f} s"
    assert tries >= 2, "not retried"


def test_bmc_answering_errors_is_retried_with_backoff_then_fails(busy_bmc: RunningBmc) -> None:
    message, took, tries = power_on_fails(busy_bmc.port)
    assert "answered with an error" in message and "busy" in message.lower(), message
    # It gives up as soon as the next wait would pass the bound, not later.
    assert took < TIMEOUT_S + OVERRUN_S, f"took {took:.1f} s"
    # Backoff 0.25 s doubling: at most 5 tries fit in 4 s (without it, dozens would).
    assert 3 <= tries <= 6, f"{tries} tries in {took:.1f} s"
    answered = busy_bmc.log.read_text().count("power on failed")
    assert answered == tries, f"the BMC saw {answered} power-on requests, vet counted {tries}"


STAGE_TEST = """\
import pytest

pytestmark = [pytest.mark.stage, pytest.mark.inventory]


def test_inventory(host):
    host.run("touch ran-a-stage")
"""


def test_in_a_run_a_dead_bmc_is_an_infrastructure_error(pytester: pytest.Pytester) -> None:
    root = pytester.path
    (root / "pxe" / "http" / "hosts").mkdir(parents=True)
    inventory = {"all": {"hosts": {"node07": {
        "ansible_host": "127.0.0.1", "vet_macs": ["52:54:00:7e:00:07"],
        "vet_power": {"driver": "ipmi", "address": "127.0.0.1", "port": dead_udp_port(),
                      "username": "admin", "password": PASSWORD, "timeout_s": TIMEOUT_S},
        "vet_pxe": {"server": "127.0.0.1", "interface": "lo", "dhcp_range": "127.0.0.2,"
                    "127.0.0.3", "http_port": 8080, "root": str(root / "pxe"),
                    "mode": "lab", "token_key_file": str(root / "token.key")}}}}}
    (root / "hosts.yml").write_text(yaml.safe_dump(inventory))
    pytester.makepyfile(test_inventory_stage=STAGE_TEST)
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "--inventory", "hosts.yml", "--run-id", "bmc1",
        "-m", "stage", "-p", "no:cacheprovider", timeout=300)
    took = time.monotonic() - started
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*BootFailed: host node07: could not power it on: host "
                                 "node07: ipmi power * via BMC 127.0.0.1:*failed*"])
    assert took < 120, f"the run took {took:.0f} s"
    assert PASSWORD not in result.stdout.str() + result.stderr.str()
    with Store(root / "reports" / "vet.sqlite") as store:
        outcomes = [r["outcome"] for r in store.test_results("bmc1", "node07")]
        assert outcomes == ["error"], outcomes  # infrastructure, not a hardware verdict
        path = [t["to_state"] for t in store.transitions("bmc1", "node07")]
        assert path[-3:] == ["PowerOn", "Booting", "Failed"], path
        reason = store.transitions("bmc1", "node07")[-1]["reason"]
        assert "could not power it on" in reason and "no answer from the BMC" in reason
        assert store.run("bmc1")["status"] == "failed"  # type: ignore[index]
    events = read_events(root / "reports" / "runs" / "bmc1" / "node07" / "events.jsonl")
    kinds = [(e["source"], e["kind"]) for e in events]
    assert ("harness", "provisioned") in kinds
    assert ("power", "power-on") not in kinds and ("harness", "booted") not in kinds
    assert not (root / "ran-a-stage").exists()
    for kept in (root / "reports").rglob("*"):
        if kept.is_file():
            assert PASSWORD.encode() not in kept.read_bytes(), f"the password is in {kept}"
