"""Fault matrix, SSH rows without a guest (docs/RELIABILITY.md): a real sshd on 127.0.0.1
whose session processes are killed or frozen while a command runs.

The command ends with a ChannelError within dead_after that says it may still run and
that vet will kill it. It does still run (a killed sshd does not take the shell and its
children with it), so vet must: the next command reconnects and kills the lost shell's
process group first. The lab row (tests/integration/test_faults_guest.py) does the same
on a booted guest; this one runs in seconds, without QEMU.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from harness.console import ChannelError, OutputLine
from tests.fixtures.sshd import Sshd
from tests.helpers import gone

pytestmark = pytest.mark.faults

DEAD_AFTER = 3.0
SLACK = 1.5


def session_processes(server: Sshd) -> list[int]:
    """The per-connection sshd processes (privileged monitor and session), not the listener."""
    return [pid for pid in server.sshd_processes() if pid != server.info.pid]


@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_a_lost_session_leaves_nothing_running_once_the_host_answers(
        private_sshd: Sshd, fault: str) -> None:
    channel = private_sshd.channel("node07", dead_after=DEAD_AFTER)
    command_pid: list[int] = []
    hurt: list[int] = []
    hurt_at: list[float] = []
    sig = signal.SIGKILL if fault == "killed" else signal.SIGSTOP

    def on_line(line: OutputLine) -> None:
        if line.text.startswith("started "):
            command_pid.append(int(line.text.split()[1]))
            hurt.extend(session_processes(private_sshd))
            for pid in hurt:
                os.kill(pid, sig)
            hurt_at.append(time.monotonic())

    try:
        with pytest.raises(ChannelError) as err:
            channel.run("sleep 612 & echo started $!; wait", 60, on_line=on_line)
        took = time.monotonic() - hurt_at[0]
        assert took <= DEAD_AFTER + SLACK, f"noticed after {took:.2f} s"
        message = str(err.value)
        assert "node07" in message and "sleep 612" in message, message
        assert "may still run on the host: vet kills it (process group" in message, message
        assert hurt, "no session process to hurt"
        assert not gone(command_pid[0], 0.2), "the command died with its session"
        if fault == "frozen":
            for pid in hurt:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        assert channel.run("echo back", 30).stdout == "back\n"
        assert gone(command_pid[0], 5.0), "what the lost session ran still runs"
    finally:
        for pid in hurt:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        channel.close()
