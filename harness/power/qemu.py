"""Driver "qemu": a lab guest's power through its QMP socket (param `qmp`).

All QMP and power semantics live in harness.power.qmp; this module only adds the
driver contract: retries within `timeout_s` and PowerError texts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from harness.models import Host
from harness.power import PowerState
from harness.power.qmp import QmpError, QmpGuest
from harness.power.target import BmcFailure, Target

T = TypeVar("T")

#: Each QMP session gets at most this long; the driver retries within timeout_s.
_SESSION_S = 10.0


class QemuDriver:
    """Power a lab guest through its own QMP socket."""

    driver = "qemu"

    def __init__(self, host: Host) -> None:
        self._target = Target(host)
        socket_path = self._target.text("qmp")
        self._target.target = f"QMP socket {socket_path}"
        self._guest = QmpGuest(socket_path, timeout_s=min(_SESSION_S, self._target.timeout_s),
                               name=f"vet-{host.name}")

    def _do(self, action: str, call: Callable[[], T]) -> T:
        def one_try(_left: float) -> T:
            try:
                return call()
            except QmpError as exc:
                raise BmcFailure(str(exc), transient=exc.transient) from None

        return self._target.attempt(action, one_try)

    def on(self) -> None:
        self._do("on", self._guest.power_on)

    def off(self, *, graceful: bool = False) -> None:
        if not graceful:
            self._do("off", self._guest.power_off)
            return
        wait_s = self._target.shutdown_timeout_s
        if not self._do("soft off", lambda: self._guest.power_down(wait_s)):
            raise self._target.still_on("soft off")

    def cycle(self) -> None:
        self._do("cycle", self._guest.cycle)

    def status(self) -> PowerState:
        on = self._do("status", self._guest.is_on)
        return PowerState.ON if on else PowerState.OFF

