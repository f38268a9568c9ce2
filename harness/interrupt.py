"""Ctrl-C and SIGTERM stop a run the same orderly way, in every pytest process.

Python turns SIGINT into KeyboardInterrupt, which the channels already handle: the
running remote command is killed before the exception goes on (SshChannel, LocalChannel
and SerialChannel stop it), pytest tears the fixtures down (the host is closed, a
netbooted one released) and the plugin records the interruption. SIGTERM (systemd, a
CI runner's timeout, `kill`) by default ends Python at once with none of that; here it
raises the same KeyboardInterrupt.

Under xdist a SIGINT typed at a terminal reaches every process of the foreground group,
but a signal sent to the controller alone (`kill -INT`, `kill -TERM`) would leave the
workers running their tests until xdist's shutdown kills them (SIGKILL after 10 s),
remote commands and all. So the controller forwards the signal to its workers.

Only the first signal interrupts: a second one (an impatient Ctrl-C, or the same
signal forwarded and typed) arriving while the cleanup runs would cut the cleanup
itself (a remote kill half sent). It is noted and ignored: every cleanup step has
its own deadline, and SIGKILL remains for a controller that must die now.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType

#: The signals that stop a run.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """The stop signals of one pytest process: which arrived first, and to whom to pass
    them on (the controller's xdist workers)."""

    def __init__(self, forward_to: Callable[[], Iterable[int]] = tuple) -> None:
        self.received: signal.Signals | None = None
        self._forward_to = forward_to
        self._previous: dict[signal.Signals, object] = {}

    @property
    def name(self) -> str | None:
        return self.received.name if self.received is not None else None

    def install(self) -> bool:
        """Handle SIGINT and SIGTERM from now on (main thread only: False elsewhere)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        if first:
            self.received = signal.Signals(signum)
        if first:
            for pid in self._forward_to():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signum)
        else:
            print(f"vet: {signal.Signals(signum).name} while already stopping after "
                  f"{self.name}: the cleanup goes on (each step has a deadline); SIGKILL "
                  "ends this process at once", file=sys.stderr, flush=True)
            return
        raise KeyboardInterrupt(f"{self.name}: interrupted by operator")


__all__ = ["STOP_SIGNALS", "Interrupts"]
