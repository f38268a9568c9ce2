"""Driver "wol": Wake-on-LAN can switch a host on and nothing else.

The magic packet comes from the `wakeonlan` package. Packets are UDP and may be
lost, so `on()` sends a few copies. Off, cycle and status raise PowerError that
says so, because guessing would let a stage believe a host was reset when it was not.
"""

from __future__ import annotations

import wakeonlan

from harness.inventory import normalize_mac
from harness.models import Host
from harness.power import PowerConfigError, PowerError, PowerState

__all__ = ["COPIES", "WolDriver"]

#: Copies of the magic packet per `on()`.
COPIES = 3


class WolDriver:
    """Send magic packets to wake a host; cannot switch it off or read its state."""

    driver = "wol"

    def __init__(self, host: Host) -> None:
        params = host.power.params
        self._host = host.name
        try:
            self._mac = normalize_mac(str(params.get("mac", "")))
        except ValueError:
            raise PowerConfigError(f"host {host.name}: vet_power.mac {params.get('mac')!r} is "
                                   "not a MAC address; write mac: '52:54:00:ab:01:02'") from None
        self._broadcast = str(params.get("broadcast") or wakeonlan.BROADCAST_IP)
        port = params.get("port", wakeonlan.DEFAULT_PORT)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise PowerConfigError(f"host {host.name}: vet_power.port {port!r} is not a UDP "
                                   "port; write port: 9")
        self._port = port
        interface = params.get("interface")
        self._interface = None if interface in (None, "") else str(interface)
        self._target = f"magic packet for {self._mac} to {self._broadcast}:{self._port}/udp"

    def _cannot(self, action: str, why: str) -> PowerError:
        return PowerError(f"host {self._host}: wol power {action} is not possible: {why}; "
                          "give the host a BMC driver (ipmi or redfish) in vet_power to "
                          "vet it unattended, or use driver: manual")

    def on(self) -> None:
        try:
            for _ in range(COPIES):
                wakeonlan.wake(self._mac, host=self._broadcast, port=self._port,
                               interface=self._interface)
        except OSError as exc:
            via = f" from {self._interface}" if self._interface else ""
            raise PowerError(f"host {self._host}: wol power on via {self._target}{via} "
                             f"failed: {exc.strerror or exc}") from None

    def off(self, *, graceful: bool = False) -> None:
        raise self._cannot("soft off" if graceful else "off",
                           "Wake-on-LAN can only switch a host on")

    def cycle(self) -> None:
        raise self._cannot("cycle", "Wake-on-LAN can only switch a host on, not reset it")

    def status(self) -> PowerState:
        raise self._cannot("status", "Wake-on-LAN cannot read the power state, it is "
                                     "unknown")
