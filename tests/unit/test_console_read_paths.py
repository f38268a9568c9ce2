"""The serial reader's fast paths give what the plain ones give.

SerialChannel's reader writes each read to the console log and hands its lines to
subscribers as a LineBlock (the lines, their joined text, whether they are plain), and
ConsoleWatch and BootTracker skip the passes that knowledge makes unnecessary. These
tests pin that none of it changes a byte of the log, a line a subscriber gets, a finding,
its evidence, the boot timeline or the watch's ring: each is compared with the way it
was done before (the log and lines with a copy of the former algorithm, the watch with
plain lists, the tracker with one line at a time), on boot transcripts cut into reads
at arbitrary places, with the odd lines a console shows (colour escapes, a CR redraw,
NUL, non-ASCII, a line longer than the evidence limit, reboots, death strings).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.console.boot import (
    EVIDENCE_LIMIT,
    BootPolicy,
    BootTracker,
    Finding,
    LineBlock,
    format_announce,
    lines_within,
)
from harness.console.serial import (
    _NOT_CONTROL,
    ConsoleLines,
    _escape,
    _timestamp,
    open_serial,
)
from harness.console.watch import ConsoleWatch

DATA = Path(__file__).resolve().parents[1] / "data" / "boot"
FINGERPRINT = "SHA256:" + "A" * 43
ODD_LINES = [
    "\x1b[0;32m  OK  \x1b[0m] Started Journal Service.",
    "progress 10%\rprogress 20%\rprogress 30%",
    "binary \x00\x07 noise",
    "Grüße aus dem Rechenzentrum",
    "x" * (EVIDENCE_LIMIT + 100),
    "EDAC MC0: 1 UE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0",
    "BUG: soft lockup - CPU#3 stuck for 22s! [stress-ng:1234]",
    "Kernel panic - not syncing: Fatal exception",
    "SeaBIOS (version 1.16.2-debian-1.16.2-1)",
    "Linux version 6.1.0-27-amd64 (debian-kernel@lists.debian.org)",
    format_announce("10.77.0.50", "52:54:00:12:34:56", "r1", FINGERPRINT),
    "",
    "\ttabbed line",
]


def _corpus() -> list[str]:
    lines: list[str] = []
    for name in ("qemu-pxe-boot.txt", "kernel-panic-trace.txt"):
        lines += (DATA / name).read_text(encoding="utf-8").split("\n")[:200]
    return lines + ODD_LINES


CORPUS = _corpus()
CONSOLE = st.lists(st.sampled_from(CORPUS), min_size=1, max_size=120)


def _reads(data: st.DataObject, stream: bytes) -> list[bytes]:
    """`stream` cut into reads at arbitrary places."""
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=12)))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


def _stream(lines: list[str], line_end: bytes) -> bytes:
    return b"".join(line.encode() + line_end for line in lines)


# --------------------------------------------------------------------------- the log


def _former_log(reads: list[bytes], at: float, secrets: tuple[bytes, ...]
                ) -> tuple[bytes, list[list[str]]]:
    """The log and the subscribers' lines as ConsoleLines made them before (a copy)."""
    log = bytearray()
    blocks: list[list[str]] = []

    def emit(sep: bytes, body: bytes) -> None:
        for secret in secrets:
            body = body.replace(secret, b"********")
        prefix = _timestamp(at) + sep
        controls = body.translate(None, _NOT_CONTROL)
        out = body.replace(b"\n", b"\n" + prefix)
        crlf_only = False
        if controls:
            line_ends = (len(out) - len(body)) // len(prefix) + body.endswith(b"\r")
            crlf_only = controls.count(b"\r") == len(controls) == line_ends
            if crlf_only:
                out = out.replace(b"\r", b"")
            else:
                body = body.replace(b"\r\n", b"\n").removesuffix(b"\r")
                out = _escape(body).replace(b"\n", b"\n" + prefix)
        log.extend(prefix + out + b"\n")
        if crlf_only:
            body = body.replace(b"\r", b"")
        blocks.append(body.decode("utf-8", errors="replace").split("\n"))

    partial = b""
    for data in reads:
        if b"\n" not in data:
            partial += data
            continue
        body, _, partial = (partial + data).rpartition(b"\n")
        emit(b" | ", body)
    if partial:
        emit(b" ~ ", partial)
    return bytes(log), blocks


def _is_plain(lines: list[str]) -> bool:
    return all(char == "\t" or " " <= char <= "~" for line in lines for char in line)


@settings(max_examples=60, deadline=None)
@given(CONSOLE, st.sampled_from([b"\r\n", b"\n", b"\r\r\n"]), st.data())
def test_the_log_and_the_lines_are_what_they_were(lines: list[str], line_end: bytes,
                                                  data: st.DataObject) -> None:
    reads = _reads(data, _stream(lines, line_end) + b"vet-1234$ ")
    secrets = ("s3cret",) if data.draw(st.booleans()) else ()
    if secrets:
        reads = [read.replace(b"Started", b"s3cret") for read in reads]
    expected_log, expected_blocks = _former_log(reads, 1_700_000_000.25,
                                                tuple(s.encode() for s in secrets))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "console.log"
        console = ConsoleLines(path, secrets=secrets)
        got: list[LineBlock] = []
        offsets: list[int | None] = []

        def subscriber(block: list[str], at: float, offset: int | None) -> None:
            assert isinstance(block, LineBlock)
            got.append(block)
            offsets.append(offset)

        console.subscribe_lines(subscriber)
        for read in reads:
            console.feed(read, 1_700_000_000.25)
        console.flush_partial(1_700_000_000.25)
        console.close()
        assert path.read_bytes() == expected_log
        assert offsets[-1] == len(expected_log)
    assert [list(block) for block in got] == expected_blocks
    for block in got:
        assert block.text == "\n".join(block)
        assert block.plain == _is_plain(list(block))


def test_a_huge_write_is_written_whole(tmp_path: Path) -> None:
    console = ConsoleLines(tmp_path / "console.log")
    body = b"y" * 999 + b"\r\n"
    console.feed(body * 8000, 0.0)  # 8 MB in one read: one writev
    console.close()
    text = (tmp_path / "console.log").read_bytes()
    assert text.count(b" | " + b"y" * 999 + b"\n") == 8000


# --------------------------------------------------------------------------- the watch


@given(st.lists(st.integers(0, 40), max_size=40), st.integers(1, 12))
def test_lines_within_says_what_the_longest_line_says(lengths: list[int], limit: int) -> None:
    text = "\n".join("a" * n for n in lengths)
    assert lines_within(text, limit) == (max(lengths, default=0) <= limit)


def _finding(finding: Finding) -> tuple[object, ...]:
    return (finding.kind, finding.severity, finding.step, finding.message, finding.evidence,
            finding.at)


def _watch() -> ConsoleWatch:
    tracker = BootTracker("node07", BootPolicy(deadlines={}), clock=lambda: 0.0)
    return ConsoleWatch(tracker=tracker, clock=lambda: 0.0, evidence_lines=20)


@settings(max_examples=60, deadline=None)
@given(CONSOLE, st.sampled_from([b"\r\n", b"\n"]), st.data())
def test_the_watch_fed_by_the_reader_sees_what_it_sees_in_plain_lists(
        lines: list[str], line_end: bytes, data: st.DataObject) -> None:
    reads = _reads(data, _stream(lines, line_end))
    fast, plain, one_by_one = _watch(), _watch(), BootTracker(
        "node07", BootPolicy(deadlines={}), clock=lambda: 0.0)
    start_fast, start_plain = fast.mark(), plain.mark()
    console = ConsoleLines(None)
    fed: list[list[str]] = []
    console.subscribe_lines(lambda block, at, offset: fed.append(list(block)))
    console.subscribe_lines(fast.feed_lines)
    for read in reads:
        console.feed(read, 0.0)
    console.flush_partial(0.0)
    by_line: list[Finding] = []
    for block in fed:
        plain.feed_lines(block, 0.0)
        for line in block:
            by_line += one_by_one.feed(line, 0.0)
    assert [_finding(f) for f in fast.findings] == [_finding(f) for f in plain.findings]
    assert fast.counts == plain.counts
    assert fast.memory() == plain.memory()
    assert fast.slice(start_fast).lines == plain.slice(start_plain).lines
    assert fast.tracker is not None and plain.tracker is not None
    assert fast.tracker.timeline() == plain.tracker.timeline() == one_by_one.timeline()
    assert fast.tracker.tail() == plain.tracker.tail() == one_by_one.tail()
    assert ([_finding(f) for f in fast.tracker.findings]
            == [_finding(f) for f in one_by_one.findings]
            == [_finding(f) for f in by_line])


# --------------------------------------------------------------------------- the socket


def test_a_socket_console_sends_what_is_typed_at_once() -> None:
    """TCP_NODELAY: without it a second write waits for the first one's (delayed) ACK."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = open_serial(f"socket://127.0.0.1:{server.getsockname()[1]}")
        peer, _ = server.accept()
        try:
            with socket.socket(fileno=os.dup(port.fileno())) as sock:
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            port.write(b"\x03")
            assert peer.recv(16) == b"\x03"  # the port still works: only the dup closed
        finally:
            port.close()
            peer.close()
