"""Fault matrix, serial console rows (docs/RELIABILITY.md), without QEMU.

The host is tests/fixtures/serial_bridge's login shell behind a pty "device"; a socat
relay serves that device on a loopback TCP port, the way ser2net serves a server's
serial port. Killing the relay drops the console connection while the host (its shell)
lives on; starting a relay again on the same port brings the console back.

- drops mid-command and comes back: the command fails at once (what it printed in the
  gap is lost); the reader reconnects with backoff, the gap is noted in the console
  log, the cut-off command is stopped before the next one runs; a console watch sees
  the host again (a panic printed after the gap is caught);
- drops and does not come back: the command fails at once, the reader gives up after
  reconnect_s and says so; later commands fail at once, naming the console.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.console import ChannelError, OutputLine
from harness.console.serial import SerialChannel
from harness.console.watch import ConsoleWatch
from tests.fixtures.serial_bridge import (
    PASSWORD,
    KernelNoise,
    SerialEndpoint,
    _socat,
    logged_in,
    start_pty_endpoint,
)
from tests.helpers import gone

pytestmark = pytest.mark.faults

RECONNECT_S = 20.0
SLACK = 2.0


@dataclass
class Relay:
    """socat serving the host's console device on 127.0.0.1:port, one client at a time."""

    device: str
    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)

    def start(self) -> None:
        listen = f"TCP-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,nodelay"
        proc, _lines, found = _socat([listen, f"FILE:{self.device},rawer,noctty"],
                                     self.workdir, r"listening on AF=2 127\.0\.0\.1:(\d+)")
        self.port, self.process = int(found.group(1)), proc
        self.pids.append(proc.pid)

    def drop(self) -> None:
        """The console server goes away (its TCP connection closes)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"


@contextlib.contextmanager
def console_host(workdir: Path) -> Iterator[tuple[SerialEndpoint, Relay]]:
    """The host's login shell on a pty device, served by a relay; all gone afterwards."""
    endpoint = start_pty_endpoint(workdir)
    # Held open so the device stays up while no relay has it (a real port does).
    hold = os.open(endpoint.url, os.O_RDWR | os.O_NOCTTY)
    relay = Relay(endpoint.url, workdir)
    try:
        relay.start()
        yield endpoint, relay
    finally:
        if relay.process is not None:
            relay.drop()
        os.close(hold)
        endpoint.stop()
    assert all(gone(pid) for pid in [*relay.pids, endpoint.process.pid])


class States:
    """The console's state changes, waited for without polling."""

    def __init__(self, channel: SerialChannel) -> None:
        self._cond = threading.Condition()
        self.seen: list[tuple[str, str, float]] = []
        channel.subscribe_state(self._on_state)

    def _on_state(self, state: str, detail: str) -> None:
        with self._cond:
            self.seen.append((state, detail, time.monotonic()))
            self._cond.notify_all()

    def wait(self, state: str, timeout: float) -> float:
        """When `state` was reached (monotonic)."""
        with self._cond:
            assert self._cond.wait_for(lambda: any(s == state for s, _, _ in self.seen),
                                       timeout), f"no {state!r} within {timeout:g} s: {self.seen}"
            return next(at for s, _, at in self.seen if s == state)


def dropped_mid_command(channel: SerialChannel, relay: Relay, tag: str) -> tuple[str, float]:
    """Run a command, drop the console once it runs; the error and how long it took."""
    dropped_at: list[float] = []

    def on_line(line: OutputLine) -> None:
        if line.text == tag:
            relay.drop()
            dropped_at.append(time.monotonic())

    with pytest.raises(ChannelError) as err:
        channel.run(f"echo {tag}; sleep 6{tag[-2:]}", 120, on_line=on_line)
    return str(err.value), time.monotonic() - dropped_at[0]


def test_console_drops_mid_command_and_comes_back(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    with console_host(tmp_path) as (endpoint, relay):
        channel = logged_in(relay.url, log.parent, "node07", console_log=log,
                            reconnect_s=RECONNECT_S)
        states = States(channel)
        watch = ConsoleWatch(host="node07")
        channel.subscribe_lines(watch.feed_lines)
        try:
            message, took = dropped_mid_command(channel, relay, "drop-21")
            assert took < SLACK, f"the command failed {took:.1f} s after the drop"
            assert "node07" in message and "disconnected while running" in message
            assert "sleep 621" in message and str(log) in message, message
            states.wait("lost", 5)
            relay.start()  # same port: the console server is back
            back_at = states.wait("back", RECONNECT_S + SLACK)
            assert back_at - states.wait("lost", 0) < RECONNECT_S
            # The cut-off command is stopped before the next one runs.
            assert channel.run("echo next", 30).stdout == "next\n"
            left = channel.run("ps -eo args | grep -c '^sleep 621$' || true", 30)
            assert left.stdout.strip() == "0", "the cut-off command still runs"
            # The watch reads the console again: a panic after the gap is caught.
            KernelNoise(endpoint.tty_path).line("Kernel panic - not syncing: after the gap")
            death = watch.wait_for_death(10)
            assert death is not None and death.kind == "panic"
        finally:
            channel.close()
    text = log.read_text()
    for note in ("! vet: console disconnected", "! vet: reconnecting for up to 20 s",
                 "! vet: console reconnected after", "what the host printed meanwhile is lost",
                 "! vet: stopped the command the disconnect cut off"):
        assert note in text, f"{note!r} not in the console log"
    assert PASSWORD not in text


def test_console_drops_mid_command_and_does_not_come_back(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    with console_host(tmp_path) as (_endpoint, relay):
        channel = logged_in(relay.url, log.parent, "node07", console_log=log,
                            reconnect_s=3.0)
        states = States(channel)
        try:
            message, took = dropped_mid_command(channel, relay, "drop-22")
            assert took < SLACK, f"the command failed {took:.1f} s after the drop"
            assert "disconnected while running" in message and "sleep 622" in message
            lost_at = states.wait("lost", 5)
            gone_at = states.wait("gone", 3.0 + 4 + SLACK)  # the last backoff may overrun
            assert 3.0 <= gone_at - lost_at < 3.0 + 4 + SLACK
            started = time.monotonic()
            with pytest.raises(ChannelError, match=r"node07: serial console .* is "
                                                   r"disconnected .*cannot run 'true'"):
                channel.run("true", 30)
            assert time.monotonic() - started < SLACK
        finally:
            channel.close()
    text = log.read_text()
    assert "! vet: console did not come back within 3 s" in text
    assert "nothing more is read from it" in text
