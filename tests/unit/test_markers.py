"""The marker protocol against a real bash on a pty, and its reader on hostile input."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.console.markers import MarkerReader, clean_output, frame


class Shell:
    """An interactive bash on a pty, the way a serial console presents one."""

    def __init__(self) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile", "-i"], stdin=slave, stdout=slave, stderr=slave,
            start_new_session=True, env={"PATH": os.environ["PATH"], "PS1": "$ ", "TERM": "dumb"},
        )
        os.close(slave)

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def run(self, command: str, timeout: float = 10.0) -> MarkerReader:
        framed = frame(command)
        reader = MarkerReader(framed)
        self.send(framed.line)
        deadline = time.monotonic() + timeout
        while not reader.done:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no end marker; saw {bytes(reader.before)[-300:]!r}"
            if select.select([self.master], [], [], remaining)[0]:
                reader.feed(os.read(self.master, 65536))
        return reader

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


@pytest.fixture
def shell() -> Iterator[Shell]:
    sh = Shell()
    yield sh
    sh.close()


def test_exit_status_and_output_through_a_pty(shell: Shell) -> None:
    reader = shell.run("echo hello; echo oops >&2; exit 42")
    assert reader.exit_status == 42
    assert clean_output(reader.output) == "hello\noops\n"


def test_quotes_newlines_and_exit_do_not_break_the_session(shell: Shell) -> None:
    reader = shell.run("printf '%s\\n' \"it's\" 'a \"test\"'\nexit 3")
    assert reader.exit_status == 3
    assert clean_output(reader.output) == "it's\na \"test\"\n"
    assert shell.run("echo still here").output.strip() == "still here"


def test_command_cannot_read_what_is_typed_next(shell: Shell) -> None:
    reader = shell.run("cat; echo after-cat")
    assert reader.exit_status == 0 and "after-cat" in reader.output


def test_stale_output_of_an_earlier_command_is_ignored(shell: Shell) -> None:
    stale = frame("echo stale-output; sleep 0.2; echo more-stale")
    shell.send(stale.line)  # never read: its output lands before the next begin marker
    reader = shell.run("echo fresh")
    assert clean_output(reader.output) == "fresh\n"


def test_output_imitating_markers_is_output() -> None:
    framed = frame("x", "abc123")
    reader = MarkerReader(framed)
    reader.feed(framed.begin + b"\n")
    reader.feed(b"\x1eVET:abc123:E:not-a-number\x1e and more text\n")
    reader.feed(b"\x1eVET:ffffff:E:0\x1e\n")  # another command's marker
    assert not reader.done
    reader.feed(b"tail\n" + framed.end_prefix + b"7\x1e\n")
    assert reader.exit_status == 7
    assert "not-a-number" in reader.output and "ffffff" in reader.output


def test_markers_split_across_reads_are_found() -> None:
    framed = frame("x", "0a0b0c")
    stream = b"echo junk\r\n" + framed.begin + b"\r\nline one\r\nline two\r\n" \
        + framed.end_prefix + b"0\x1e\r\n$ "
    lines: list[str] = []
    reader = MarkerReader(framed, on_line=lines.append)
    for i in range(len(stream)):
        reader.feed(stream[i : i + 1])
    assert reader.exit_status == 0
    assert lines == ["line one", "line two"]


def test_reader_keeps_a_bounded_buffer_whatever_the_output_size() -> None:
    """Linear time follows from this: each read is searched once, plus a marker's overlap.

    (Speed itself is measured in benchmarks/bench_serial.py, not timed here.)
    """
    framed = frame("x", "1234")
    reader = MarkerReader(framed, on_line=lambda line: None)
    chunk = b"[    1.234567] some kernel-like console line with text\n" * 1000
    reader.feed(b"junk before the command\n" * 10_000)
    assert len(reader._buffer) < len(framed.begin)
    reader.feed(framed.begin + b"\n")
    largest = 0
    for _ in range(16 * 1024 * 1024 // len(chunk)):
        reader.feed(chunk)
        largest = max(largest, len(reader._buffer))
    reader.feed(framed.end_prefix + b"0\x1e\n")
    assert reader.done and reader.exit_status == 0
    assert largest < 64, largest  # only a possible partial marker is ever held back


@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_never_raise_and_never_end_the_command(noise: bytes, step: int) -> None:
    framed = frame("x", "feedbeef")
    reader = MarkerReader(framed)
    data = framed.begin + b"\n" + noise.replace(b"feedbeef", b"")
    for i in range(0, len(data), step):
        reader.feed(data[i : i + step])
    assert not reader.done
    reader.feed(b"\n" + framed.end_prefix + b"5\x1e")
    assert reader.exit_status == 5
