"""The ipmi driver running the real ipmitool against the lab BMC (pyghmi) and a real guest."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.models import Connection, Host, PowerConfig
from harness.power import GracefulOffTimeout, PowerError, PowerState, power_driver
from harness.power.ipmi import IpmiDriver
from harness.power.qmp import QmpGuest
from tests.fixtures.lab_bmc import RunningBmc, start_bmc
from tests.fixtures.qemu_guest import QemuGuest, start_guest

PASSWORD = "s3cret-ipmi-pass"


@pytest.fixture
def guest() -> Iterator[QemuGuest]:
    with start_guest() as started:
        yield started


@pytest.fixture
def bmc(guest: QemuGuest, tmp_path: Path) -> Iterator[RunningBmc]:
    password_file = tmp_path / "bmc.pass"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    with start_bmc("harness.lab.bmc",
                   ["--name", "guest1", "--qmp", str(guest.qmp_bmc), "--address", "127.0.0.1",
                    "--port", "0", "--username", "admin", "--password-file",
                    str(password_file)], tmp_path / "bmc.log") as running:
        yield running


def _host(port: int, password: str = PASSWORD, **params: Any) -> Host:
    return Host(name="node07", connection=Connection(kind="local"),
                power=PowerConfig(driver="ipmi",
                                  params={"address": "127.0.0.1", "port": port,
                                          "username": "admin", "timeout_s": 20, **params},
                                  secrets={"password": password}))


def test_power_on_off_status_cycle_bootdev(guest: QemuGuest, bmc: RunningBmc) -> None:
    driver = power_driver(_host(bmc.port))
    assert isinstance(driver, IpmiDriver)
    look = QmpGuest(guest.qmp)
    assert driver.status() is PowerState.OFF

    driver.on()
    assert look.run_state() == "running"
    assert driver.status() is PowerState.ON

    driver.off()
    assert not look.is_on()
    assert driver.status() is PowerState.OFF

    driver.cycle()  # off -> on
    assert look.run_state() == "running"
    driver.cycle()  # on -> reset, still on
    assert driver.status() is PowerState.ON

    driver.boot_pxe()
    assert "boot device network (recorded only)" in bmc.log.read_text()
    driver.off()
    assert driver.status() is PowerState.OFF


def test_soft_off_of_a_guest_without_os_is_bounded(bmc: RunningBmc) -> None:
    driver = power_driver(_host(bmc.port, shutdown_timeout_s=1.5))
    driver.on()
    started = time.monotonic()
    with pytest.raises(GracefulOffTimeout) as caught:
        driver.off(graceful=True)
    assert time.monotonic() - started < 10
    assert "host node07: ipmi power soft off via BMC 127.0.0.1" in str(caught.value)
    assert "still on after 1.5 s" in str(caught.value)
    assert "soft off (ACPI power button)" in bmc.log.read_text()
    assert driver.status() is PowerState.ON


def test_wrong_password_says_authentication(bmc: RunningBmc) -> None:
    driver = power_driver(_host(bmc.port, password="not-the-password"))
    started = time.monotonic()
    with pytest.raises(PowerError) as caught:
        driver.status()
    assert time.monotonic() - started < 10  # not retried: it will not get better
    text = str(caught.value)
    assert f"BMC 127.0.0.1:{bmc.port}" in text
    assert "authentication failed" in text and "password" in text
    assert "not-the-password" not in text and PASSWORD not in text


def test_nothing_listening_fails_within_the_bound() -> None:
    # A bound UDP socket nobody reads: the BMC "exists" but never answers.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        driver = power_driver(_host(port, timeout_s=4))
        started = time.monotonic()
        with pytest.raises(PowerError) as caught:
            driver.on()
        took = time.monotonic() - started
    assert 3 <= took < 7, took
    text = str(caught.value)
    assert f"host node07: ipmi power on via BMC 127.0.0.1:{port} failed" in text
    assert "no answer from the BMC" in text and "tries in 4 s" in text


def test_password_never_on_a_command_line(bmc: RunningBmc, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrapper ipmitool records every command line on the machine during the call."""
    record = tmp_path / "seen"
    wrapper_dir = tmp_path / "bin"
    wrapper_dir.mkdir()
    wrapper = wrapper_dir / "ipmitool"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"ps -eo args > '{record}.ps'\n"
        f"tr '\\0' ' ' < /proc/$$/cmdline > '{record}.argv'\n"
        f"[ -n \"$IPMI_PASSWORD\" ] && echo yes > '{record}.env'\n"
        'exec /usr/bin/ipmitool "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{wrapper_dir}{os.pathsep}{os.environ['PATH']}")

    driver = power_driver(_host(bmc.port))
    assert driver.status() is PowerState.OFF  # the real ipmitool authenticated

    argv = Path(f"{record}.argv").read_text()
    assert "-E" in argv.split() and "-U admin" in argv
    assert PASSWORD not in argv
    assert PASSWORD not in Path(f"{record}.ps").read_text()
    assert Path(f"{record}.env").read_text().strip() == "yes"
    assert PASSWORD not in " ".join(IpmiDriver(_host(bmc.port)).argv("power", "status"))


@pytest.mark.parametrize("module", ["harness.lab.bmc", "harness.lab.redfish"])
def test_lab_bmc_names_a_missing_password_file(module: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such.pass"
    extra = (["--name", "g", "--qmp", "/nonexistent.sock"] if module.endswith("bmc")
             else ["--guest", "g=/nonexistent.sock"])
    done = subprocess.run([sys.executable, "-m", module, *extra, "--port", "0",
                           "--username", "admin", "--password-file", str(missing)],
                          capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stdout == ""  # no ready line
    assert f"cannot read the password file {missing}: No such file or directory" in done.stderr
    assert "Traceback" not in done.stderr
