"""Starting and stopping the lab's long-lived processes.

`vet lab up` exits while dnsmasq, the HTTP server, the BMCs and QEMU keep running, so each
is started in a session of its own and waited for by an event it gives (a ready line on its
stdout, or a daemonising parent that exits once it has bound its sockets), never by a sleep.
Stopping checks the pid still belongs to this lab before it signals anything.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from harness.errors import VetError


class LabError(VetError):
    """The lab could not be brought up, inspected or torn down; says what and why."""


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(tail) or "(empty log)"


def spawn_ready(argv: Sequence[str], *, what: str, log: Path, ready_prefix: str,
                deadline_s: float = 30.0, env: dict[str, str] | None = None,
                stdin_data: bytes | None = None) -> int:
    """Start a daemon that prints one line starting with `ready_prefix` once it serves.

    Its stderr goes to `log`; the pid is returned. A process that exits or stays silent
    past the deadline is stopped and reported with the end of its log.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as err:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=err, start_new_session=True, env=env)
    assert proc.stdout is not None
    if stdin_data is not None:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(stdin_data)
        proc.stdin.close()
    deadline = time.monotonic() + deadline_s
    buffer = b""
    fd = proc.stdout.fileno()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LabError(f"{what} did not say it was ready within {deadline_s:g} s; "
                               f"its log ({log}) ends:\n{log_tail(log)}")
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                code = proc.wait(timeout=10)
                raise LabError(f"{what} exited (status {code}) before it was ready; "
                               f"its log ({log}) ends:\n{log_tail(log)}")
            buffer += chunk
            for line in buffer.split(b"\n")[:-1]:
                if line.decode(errors="replace").startswith(ready_prefix):
                    return proc.pid
    except BaseException:
        stop_process(proc.pid, what=what)
        proc.wait(timeout=10)
        raise
    finally:
        proc.stdout.close()


def run_daemonizing(argv: Sequence[str], *, what: str, log: Path, pid_file: Path,
                    timeout_s: float = 60.0) -> int:
    """Run a program that forks into the background once it is set up (dnsmasq, QEMU
    -daemonize): its parent exiting 0 is the ready event. Returns the daemon's pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what} did not finish starting within {timeout_s:g} s") from exc
    with log.open("ab") as fh:
        fh.write(done.stdout + done.stderr)
    if done.returncode != 0:
        message = (done.stderr or done.stdout).decode(errors="replace").strip()
        raise LabError(f"{what} failed to start (status {done.returncode}): "
                       f"{message[-1500:] or '(no output)'}")
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise LabError(f"{what} started but wrote no pid to {pid_file}") from exc


def cmdline_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def is_ours(pid: int, marker: str) -> bool:
    """Whether `pid` runs and its command line names `marker` (guards against pid reuse)."""
    return pid > 0 and marker in cmdline_of(pid)


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait for `pid` to exit (a pidfd becomes readable), up to `timeout` seconds."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


def stop_process(pid: int, *, what: str, marker: str | None = None,
                 grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; with `marker`, only if the pid is still ours."""
    if marker is not None and not is_ours(pid, marker):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if wait_gone(pid, grace_s):
        _reap(pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_gone(pid, 10.0):
        raise LabError(f"{what} (pid {pid}) did not exit after SIGKILL")
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status of a child of ours, so no zombie stays behind."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
