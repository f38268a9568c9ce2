"""Power control of a host under test: one protocol, one driver per kind of BMC.

Stages and the lab only ever see `PowerDriver`; `power_driver(host)` picks the module
for `host.power.driver` (see POWER_DRIVERS in harness/inventory.py for the parameters
each takes). Driver modules are imported on demand, so a rack of IPMI hosts never
imports requests or sushy, and the other way round.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from harness.errors import VetError
from harness.models import Host

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "GracefulOffTimeout",
    "PowerConfigError",
    "PowerDriver",
    "PowerError",
    "PowerState",
    "power_driver",
]

#: How long a driver keeps retrying a BMC that fails transiently (param `timeout_s`).
DEFAULT_TIMEOUT_S = 30.0
#: How long `off(graceful=True)` waits for the OS to power down (`shutdown_timeout_s`).
DEFAULT_SHUTDOWN_TIMEOUT_S = 120.0


class PowerState(enum.StrEnum):
    ON = "on"
    OFF = "off"


class PowerError(VetError):
    """A power action failed: names host, driver, action, target and what went wrong.

    Never carries a password: drivers build the text from their own words and the
    BMC's answers, not from their argv or request objects.
    """


class PowerConfigError(PowerError):
    """The host's vet_power parameters cannot work; the text says what to write."""


class GracefulOffTimeout(PowerError):
    """The OS was asked to power down (ACPI) and did not within the deadline.

    Its own type so a caller can choose to force the power off afterwards.
    """


@runtime_checkable
class PowerDriver(Protocol):
    """What every driver does; every call has a deadline and raises PowerError."""

    driver: str

    def on(self) -> None: ...

    def off(self, *, graceful: bool = False) -> None: ...

    def cycle(self) -> None: ...

    def status(self) -> PowerState: ...


def power_driver(host: Host, *, ask: Callable[[str], None] | None = None) -> PowerDriver:
    """Build the driver named by `host.power.driver` from its parameters and secrets.

    `ask` is how the manual driver talks to the operator (default: the terminal).
    """
    name = host.power.driver
    if name == "ipmi":
        from harness.power.ipmi import IpmiDriver

        return IpmiDriver(host)
    if name == "redfish":
        from harness.power.redfish import RedfishDriver

        return RedfishDriver(host)
    if name == "qemu":
        from harness.power.qemu import QemuDriver

        return QemuDriver(host)
    if name == "wol":
        from harness.power.wol import WolDriver

        return WolDriver(host)
    if name == "manual":
        from harness.power.manual import ManualDriver

        return ManualDriver(host, ask=ask)
    raise PowerConfigError(
        f"host {host.name}: vet_power.driver {name!r} is not a power driver vet has; "
        "use one of: ipmi, redfish, qemu, wol, manual")
