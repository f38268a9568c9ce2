"""Host leases: one live run per host, and none on a held host.

A run's controller process takes a lease on each of its hosts in the run store when the
session starts and gives them back when it ends. A second run that targets a leased or
held host is refused with who has it and since when, instead of power-cycling a machine
someone else is vetting or examining. A lease left by a controller that died (same
machine, its process gone) is taken over; one from another machine is not, since vet
cannot see its processes (a human must check, then `vet release` or wait).
"""

from __future__ import annotations

import getpass
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import VetError
from harness.store import Store


class HostBusy(VetError):
    """A host is held or in another live run; the text names who has it and since when."""


def operator() -> str:
    """Who is acting: the login name (for holds, releases and overrides)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return f"uid{os.getuid()}"


def holder() -> str:
    """user@controller, as a refusal names the other party."""
    return f"{operator()}@{platform.node()}"


def process_start(pid: int) -> str:
    """The start time of a process (clock ticks after boot); '' when it is gone.

    With the pid it tells a live controller from a new process that reused its pid.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


def this_lease() -> dict[str, Any]:
    """The lease fields that identify this controller process."""
    pid = os.getpid()
    return {"holder": holder(), "controller": platform.node(), "pid": pid,
            "pid_start": process_start(pid)}


def is_stale(lease: dict[str, Any]) -> bool:
    """A lease of a controller on this machine whose process no longer runs."""
    if lease["controller"] != platform.node():
        return False
    started = process_start(int(lease["pid"]))
    return started == "" or (bool(lease["pid_start"]) and started != lease["pid_start"])


def when(at: float | None) -> str:
    """A moment as operators read it in every vet message: UTC, to the second."""
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def refusal(conflicts: Sequence[dict[str, Any]]) -> str:
    """The operator's message for hosts another run or a hold has."""
    lines = []
    for c in conflicts:
        if c["kind"] == "held":
            expired = c["expires_at"] is not None and c["expires_at"] <= time.time()
            lines.append(
                f"host {c['host']} is held for a human by {c['holder'] or '?'} (run "
                f"{c['run_id']}) since {when(c['since'])}, until {when(c['expires_at'])}"
                f"{' (expired: `vet janitor` releases it)' if expired else ''}: "
                f"`vet holds` shows how to get in, `vet release {c['host']}` frees it, "
                f"`vet retry {c['host']} --stage STAGE` re-runs a stage on it")
        else:
            lines.append(
                f"host {c['host']} is busy in run {c['run_id']} of {c['holder']} (pid "
                f"{c['pid']}) since {when(c['since'])}: wait for that run to end, or leave "
                f"the host out with --hosts '...:!{c['host']}'")
    return "\n".join(lines)


def acquire(store: Store, run_id: str, hosts: Sequence[str], *,
            attach_held: bool = False) -> None:
    """Lease `hosts` to this process for `run_id`, or raise HostBusy naming the others."""
    conflicts = store.acquire_leases(run_id, hosts, this_lease(), is_stale,
                                     attach_held=attach_held)
    if conflicts:
        raise HostBusy(refusal(conflicts))


def release(store: Store, run_id: str) -> None:
    """Give back this run's leases (held hosts stay busy through their hold)."""
    store.release_leases(run_id)
