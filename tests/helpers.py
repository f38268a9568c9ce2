"""Small helpers shared by vet's own tests."""

from __future__ import annotations

import os
import select


def gone(pid: int, within: float = 5.0) -> bool:
    """True once the process has exited, waiting at most `within` seconds.

    A pidfd turns readable when the process exits (also for a process that is not our
    child), so this waits on an event, not by polling.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], within)[0])
    finally:
        os.close(fd)
