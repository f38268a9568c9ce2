"""The lab guest's power semantics over QMP, shared by the qemu driver and the lab BMCs.

Lab guests run with `-S -no-shutdown`, so the guest never exits on its own:
powered off means run state prelaunch, paused or shutdown. on = system_reset
(unless prelaunch) + cont; hard off = stop + system_reset; graceful off =
system_powerdown and wait for the SHUTDOWN event; cycle = system_reset (+ cont
when not running).

QEMU's own client (`qemu.qmp`) speaks the protocol. Its async `QMPClient` is used
through `asyncio.run` rather than its sync wrapper (`qemu.qmp.legacy`) because the
wrapper's connect has no timeout: a QMP socket serves one client at a time, and a
second client connects but never gets a greeting. Every session here is short
(connect, act, disconnect) and bounded by one deadline, and one QmpGuest object
serialises its own threads, so a BMC serving several requests never opens two.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import ConnectError, ExecuteError, QMPClient, QMPError

__all__ = ["OFF_STATES", "QmpError", "QmpGuest"]

T = TypeVar("T")

#: Run states that mean "powered off" for a guest started with -S -no-shutdown.
OFF_STATES = frozenset({"prelaunch", "paused", "shutdown"})


class QmpError(Exception):
    """Talking to the guest's QMP socket failed; the text says how.

    `transient` is True when trying again may help (socket missing or busy).
    """

    def __init__(self, what: str, *, transient: bool) -> None:
        super().__init__(what)
        self.transient = transient


Session = Callable[[QMPClient], Awaitable[T]]


class QmpGuest:
    """One guest behind its own QMP socket; every method has a deadline of `timeout_s`."""

    def __init__(self, socket_path: str | Path, *, timeout_s: float = 10.0,
                 name: str = "vet") -> None:
        self.socket_path = str(socket_path)
        self.timeout_s = timeout_s
        self._name = name
        self._lock = threading.Lock()

    # ------------------------------------------------------------ sessions

    def _run(self, what: str, session: Session[T], timeout_s: float | None = None) -> T:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        started = time.monotonic()
        if not self._lock.acquire(timeout=timeout):
            raise QmpError(f"QMP socket {self.socket_path}: still busy with another request "
                           f"after {timeout:g} s", transient=True)
        try:
            left = max(0.1, timeout - (time.monotonic() - started))
            return asyncio.run(self._session(what, session, left))
        finally:
            self._lock.release()

    async def _session(self, what: str, session: Session[T], timeout: float) -> T:
        client = QMPClient(self._name)
        try:
            async with asyncio.timeout(timeout):
                await client.connect(self.socket_path)
                return await session(client)
        except TimeoutError:
            raise QmpError(
                f"QMP socket {self.socket_path}: no answer to {what} within {timeout:g} s "
                "(is another client connected? each user needs its own -qmp socket)",
                transient=True) from None
        except ConnectError as exc:
            raise QmpError(f"cannot connect to QMP socket {self.socket_path}: "
                           f"{_reason(exc)}", transient=True) from None
        except ExecuteError as exc:
            raise QmpError(f"QEMU refused {what} on {self.socket_path}: {exc.error.error.desc}",
                           transient=False) from None
        except (QMPError, OSError, EOFError) as exc:
            raise QmpError(f"QMP socket {self.socket_path}: connection lost during {what}: "
                           f"{_reason(exc)}", transient=True) from None
        finally:
            await client.disconnect()

    # ------------------------------------------------------------ power

    def run_state(self) -> str:
        """QEMU's run state, e.g. running, prelaunch, paused, shutdown."""
        return self._run("query-status", _status)

    def is_on(self) -> bool:
        return self.run_state() not in OFF_STATES

    def power_on(self) -> None:
        """Start the guest unless it runs already (from -S: just cont)."""
        async def session(client: QMPClient) -> None:
            state = await _status(client)
            if state == "running":
                return
            if state != "prelaunch":
                await _reset(client)
            await client.execute("cont")

        self._run("power on (system_reset + cont)", session)

    def power_off(self) -> None:
        """Hard off: stop the CPUs and reset, so the next on starts from firmware."""
        async def session(client: QMPClient) -> None:
            if await _status(client) in OFF_STATES:
                return
            await client.execute("stop")
            await _reset(client)

        self._run("hard power off (stop + system_reset)", session)

    def press_power_button(self) -> None:
        """Send the ACPI power button (what a BMC's soft off does) and return."""
        async def session(client: QMPClient) -> None:
            if await _status(client) not in OFF_STATES:
                await client.execute("system_powerdown")

        self._run("ACPI power button (system_powerdown)", session)

    def power_down(self, wait_s: float) -> bool:
        """ACPI power button, then wait up to `wait_s` for the OS to power down.

        Returns True once the guest is off, False if it is still on at the deadline
        (no OS, or an OS that ignores the button). Waits on QEMU's SHUTDOWN event.
        """
        async def session(client: QMPClient) -> bool:
            if await _status(client) in OFF_STATES:
                return True
            with client.listener(names=("SHUTDOWN",)) as listener:
                await client.execute("system_powerdown")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(listener.get(), wait_s)
            return await _status(client) in OFF_STATES

        return self._run("graceful power off (system_powerdown)", session,
                         timeout_s=wait_s + self.timeout_s)

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Any other QMP command, e.g. the lab's faults: stop, cont, set_link, device_del."""
        async def session(client: QMPClient) -> Any:
            return await client.execute(command, arguments)

        return self._run(command, session)

    def cycle(self) -> None:
        """Reset the guest and make sure it runs (an off guest comes on)."""
        async def session(client: QMPClient) -> None:
            await _reset(client)
            if await _status(client) != "running":
                await client.execute("cont")

        self._run("power cycle (system_reset + cont)", session)


async def _reset(client: QMPClient) -> None:
    """system_reset, returning once QEMU has done it (its RESET event).

    QEMU only queues the reset; a `cont` sent before it is done would find a guest in
    state shutdown still needing the reset and be refused. The session's deadline bounds
    the wait.
    """
    with client.listener(names=("RESET",)) as listener:
        await client.execute("system_reset")
        await listener.get()


async def _status(client: QMPClient) -> str:
    answer: Any = await client.execute("query-status")
    return str(answer["status"])


def _reason(exc: BaseException) -> str:
    """The innermost cause, which says what really happened (ENOENT, ECONNREFUSED...)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, ConnectError) and exc.exc is not None:
        exc = exc.exc
    text = str(exc) or type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return "no such socket (is the guest running?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (QEMU is gone or not listening)"
    return text
