"""Driver "manual": a person presses the power button when vet asks.

For hosts with no BMC vet can drive. `ask(message)` returns once the operator has
done what the message says; the default writes to stderr and waits for Enter on
the controlling terminal (no deadline: a person may need to walk to the rack).
Without a terminal nobody can answer, so it fails at once instead of hanging.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from harness.models import Host
from harness.power import PowerError, PowerState

__all__ = ["ManualDriver", "ask_on_terminal"]


class NoTerminal(PowerError):
    """The manual driver needs a person at a terminal and there is none."""


def ask_on_terminal(message: str) -> None:
    """Show `message` on stderr and wait for Enter on /dev/tty; NoTerminal if none."""
    try:
        tty = open("/dev/tty", "r+b", buffering=0)  # noqa: SIM115 - closed below
    except OSError:
        raise NoTerminal(f"{message.splitlines()[0]}\nbut there is no terminal to ask an "
                         "operator (vet runs unattended); give the host a power driver vet "
                         "can run itself: ipmi, redfish, qemu or wol in vet_power") from None
    with tty:
        print(f"{message}\nPress Enter when done.", file=sys.stderr, flush=True)
        tty.readline()


class ManualDriver:
    """Ask the operator to do each power action by hand."""

    driver = "manual"

    def __init__(self, host: Host, *, ask: Callable[[str], None] | None = None) -> None:
        self._host = host.name
        instructions = host.power.params.get("instructions")
        self._instructions = str(instructions) if instructions else None
        self._ask = ask or ask_on_terminal

    def _request(self, what: str) -> None:
        message = f"host {self._host}: {what}"
        if self._instructions:
            message += f" ({self._instructions})"
        self._ask(message)

    def on(self) -> None:
        self._request("power the server ON now")

    def off(self, *, graceful: bool = False) -> None:
        if graceful:
            self._request("shut the server down from its OS (or press the power button "
                          "briefly) and wait until it is OFF")
        else:
            self._request("power the server OFF now (hold the power button)")

    def cycle(self) -> None:
        self._request("power-cycle the server now: OFF, wait a few seconds, then ON")

    def status(self) -> PowerState:
        raise PowerError(f"host {self._host}: manual power status is unknown: vet cannot see "
                         "a server's power without a BMC; use driver ipmi, redfish or qemu "
                         "in vet_power to read it")

