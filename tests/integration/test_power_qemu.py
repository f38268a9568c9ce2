"""The qemu power driver against a real QEMU guest over QMP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.models import Connection, Host, PowerConfig
from harness.power import GracefulOffTimeout, PowerError, PowerState, power_driver
from harness.power.qmp import QmpGuest
from tests.fixtures.qemu_guest import QemuGuest, start_guest


@pytest.fixture
def guest() -> Iterator[QemuGuest]:
    with start_guest() as started:
        yield started


def _host(qmp: Path | str, **params: Any) -> Host:
    return Host(name="guest1", connection=Connection(kind="local"),
                power=PowerConfig(driver="qemu", params={"qmp": str(qmp), **params}))


def test_off_on_status_cycle(guest: QemuGuest) -> None:
    driver = power_driver(_host(guest.qmp, timeout_s=10))
    look = QmpGuest(guest.qmp_bmc)
    assert driver.driver == "qemu"
    assert look.run_state() == "prelaunch"
    assert driver.status() is PowerState.OFF

    driver.off()  # already off: nothing to do
    assert look.run_state() == "prelaunch"
    driver.on()
    assert look.run_state() == "running"
    assert driver.status() is PowerState.ON
    driver.on()  # already on: stays on
    assert look.run_state() == "running"

    driver.off()
    assert look.run_state() in ("paused", "prelaunch")  # QEMU 7.2: stop + reset -> prelaunch
    assert driver.status() is PowerState.OFF

    driver.on()  # from off again
    assert driver.status() is PowerState.ON
    driver.cycle()
    assert look.run_state() == "running"
    driver.off()
    driver.cycle()  # an off guest comes on
    assert driver.status() is PowerState.ON


def test_graceful_off_without_os_is_bounded(guest: QemuGuest) -> None:
    driver = power_driver(_host(guest.qmp, timeout_s=5, shutdown_timeout_s=1.5))
    driver.on()
    started = time.monotonic()
    with pytest.raises(GracefulOffTimeout) as caught:
        driver.off(graceful=True)
    took = time.monotonic() - started
    assert 1.5 <= took < 6, took
    text = str(caught.value)
    assert "host guest1" in text and "qemu power soft off" in text
    assert str(guest.qmp) in text and "still on after 1.5 s" in text
    assert driver.status() is PowerState.ON
    driver.off()
    assert driver.status() is PowerState.OFF
    driver.off(graceful=True)  # already off: nothing to wait for


def test_missing_socket_fails_within_the_bound(tmp_path: Path) -> None:
    driver = power_driver(_host(tmp_path / "nothing.sock", timeout_s=1.5))
    started = time.monotonic()
    with pytest.raises(PowerError) as caught:
        driver.status()
    assert time.monotonic() - started < 4
    text = str(caught.value)
    assert "host guest1: qemu power status via QMP socket" in text
    assert "no such socket" in text and "tries in 1.5 s" in text


def test_busy_socket_is_reported_not_hung(guest: QemuGuest) -> None:
    """A second client on a QMP socket gets no greeting: the driver must give up in time."""
    driver = power_driver(_host(guest.qmp, timeout_s=1.5))
    holder = QmpGuest(guest.qmp)
    import asyncio

    from qemu.qmp import QMPClient

    async def hold_then_try() -> str:
        client = QMPClient("holder")
        await client.connect(str(guest.qmp))
        try:
            return await asyncio.to_thread(_status_error, driver)
        finally:
            await client.disconnect()

    started = time.monotonic()
    text = asyncio.run(hold_then_try())
    assert time.monotonic() - started < 6
    assert "no answer to query-status" in text and "another client" in text
    assert holder.run_state() == "prelaunch"  # free again once the holder left


def _status_error(driver: Any) -> str:
    with pytest.raises(PowerError) as caught:
        driver.status()
    return str(caught.value)
