"""Waiting for a process to exit, on an event rather than by polling."""

from __future__ import annotations

import os
import select


def exited(pid: int, within: float = 5.0) -> bool:
    """True once process `pid` has exited, waiting at most `within` seconds.

    A pidfd turns readable when the process exits, also for a process that is not this
    one's child, so the wait is one select, not a loop of kill(pid, 0) checks.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], within)[0])
    finally:
        os.close(fd)


__all__ = ["exited"]
