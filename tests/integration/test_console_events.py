"""A run's console into its event log (harness.host.log_console) over a real socket://
console: one "lines" event per read, stamped with the read's time, holding every line
in order, and `vet logs`' rendering of them line by line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.console.serial import SerialChannel
from harness.event_format import format_lines
from harness.events import EventLog, read_events
from harness.host import log_console
from tests.fixtures.console_pusher import Pusher


@pytest.fixture
def lines() -> list[str]:
    return [f"[{n / 1000:12.6f}] line {n} of a busy console \t\"quoted\"" for n in range(3000)]


@pytest.fixture
def pusher(lines: list[str]) -> Iterator[Pusher]:
    payload = b"".join(line.encode() + b"\r\n" for line in lines) + b"END-OF-TEST\r\n"
    server = Pusher(payload)
    yield server
    server.close()


def test_the_console_goes_to_the_event_log_one_event_per_read(
        tmp_path: Path, pusher: Pusher, lines: list[str]) -> None:
    events = EventLog(tmp_path / "events.jsonl", "r1", "node01")
    heard: list[float] = []
    events.subscribe(lambda e: heard.append(e["at"]))
    channel = SerialChannel("node01", f"socket://127.0.0.1:{pusher.port}",
                            console_log=tmp_path / "console.log")
    before = time.time()
    channel.open()
    try:
        log_console(channel, events)
        with channel.console(timeout=60) as con:
            con.send(b"g")
            con.expect_exact(b"END-OF-TEST\r\n", timeout=60)
    finally:
        channel.close()  # the reader thread has handed on every read by then
        events.close()
    written = read_events(tmp_path / "events.jsonl")
    assert {e["kind"] for e in written} == {"lines"}
    assert {e["source"] for e in written} == {"console"}
    got = [line for e in written for line in e["lines"]]
    assert got == [*lines, "END-OF-TEST"]
    assert 1 <= len(written) < len(lines) // 2  # per read, not per line
    times = [e["at"] for e in written]
    assert times == sorted(times) and before <= times[0] <= times[-1] <= time.time()
    assert heard == times
    shown = [text for e in written for text in format_lines(e)]
    assert len(shown) == len(lines) + 1
    assert shown[7].endswith(f"console   line          {lines[7].replace(chr(9), ' ')}")
