"""ConsoleSpawn.expect_exact (no output copies, `before` joined when read) is pexpect's.

The console session's expect_exact runs its own Expecter so that a long wait does not
copy the whole output twice; these tests pin that every wait gives what pexpect's own
expect_exact gives on the same reads: the index, `before`, `after`, what is left in the
buffer, and how a TIMEOUT or EOF ends, then a regex expect() that goes on from there.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pexpect
import pexpect.spawnbase
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.console.serial import ConsoleSpawn, _Tap


class _Scripted(ConsoleSpawn):
    """A session whose reads are the given chunks, then TIMEOUT (or EOF: `closed`)."""

    def __init__(self, chunks: list[bytes], closed: bool, keep_before: bool = True) -> None:
        super().__init__(None, _Tap(), timeout=None,  # type: ignore[arg-type]
                         keep_before=keep_before)
        self.reads = list(chunks)
        self.ends_closed = closed

    def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> bytes:
        if self.reads:
            return self.reads.pop(0)
        if self.ends_closed:
            raise pexpect.EOF("closed")
        raise pexpect.TIMEOUT("no more")


def _session(chunks: list[bytes], closed: bool, keep_before: bool = True) -> ConsoleSpawn:
    return _Scripted(chunks, closed, keep_before)


def _outcome(spawn: ConsoleSpawn, wait: Any) -> tuple[object, ...]:
    try:
        index = wait()
    except (pexpect.TIMEOUT, pexpect.EOF) as error:
        index = type(error).__name__
    return index, spawn.before, spawn.after, spawn.buffer, spawn.match_index


_ALPHABET = b"ab\r\n"
_data = st.binary(max_size=40).map(lambda b: bytes(_ALPHABET[x % 4] for x in b))
_pattern = st.binary(min_size=1, max_size=4).map(
    lambda b: bytes(_ALPHABET[x % 4] for x in b))
_wait = st.lists(st.one_of(_pattern, st.sampled_from([pexpect.TIMEOUT, pexpect.EOF])),
                 min_size=1, max_size=3)


@settings(max_examples=400, deadline=None)
@given(chunks=st.lists(_data, max_size=8), waits=st.lists(_wait, min_size=1, max_size=4),
       closed=st.booleans(), then_regex=st.booleans())
def test_expect_exact_is_pexpects(chunks: list[bytes], waits: list[list[Any]],
                                  closed: bool, then_regex: bool) -> None:
    ours, theirs = _session(chunks, closed), _session(chunks, closed)
    for patterns in waits:
        got = _outcome(ours, lambda p=patterns: ours.expect_exact(p, timeout=None))
        want = _outcome(theirs, lambda p=patterns: pexpect.spawnbase.SpawnBase.expect_exact(
            theirs, p, None, None))
        assert got == want
    if then_regex:
        assert (_outcome(ours, lambda: ours.expect([rb"b\r?\n", pexpect.TIMEOUT], None))
                == _outcome(theirs, lambda: theirs.expect([rb"b\r?\n", pexpect.TIMEOUT], None)))


def test_before_keeps_all_output_since_the_last_match() -> None:
    body = b"x" * 3_000_000
    spawn = _session([body[:1_000_000], body[1_000_000:] + b"MARK", b"rest"], closed=False)
    assert spawn.expect_exact(b"MARK") == 0
    assert spawn.before == body and spawn.after == b"MARK"
    assert spawn.expect_exact([b"never", pexpect.TIMEOUT]) == 1
    assert spawn.before == b"rest"


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(_data, max_size=8), waits=st.lists(_wait, min_size=1, max_size=4),
       closed=st.booleans(), recent=st.integers(0, 12))
def test_without_keep_before_only_the_tail_of_before_is_kept(
        chunks: list[bytes], waits: list[list[Any]], closed: bool, recent: int) -> None:
    """keep_before=False: the same matches; `before` ends as pexpect's does and holds at
    least its last RECENT bytes. Up to the first wait that ends without a match: after
    it only the last RECENT bytes or more are searched again (as a search window)."""
    ours, theirs = _session(chunks, closed, keep_before=False), _session(chunks, closed)
    with mock.patch("harness.console.serial.RECENT", recent):
        for patterns in waits:
            got = _outcome(ours, lambda p=patterns: ours.expect_exact(p, timeout=None))
            want = _outcome(theirs, lambda p=patterns: pexpect.spawnbase.SpawnBase.expect_exact(
                theirs, p, None, None))
            assert (got[0], got[2], got[4]) == (want[0], want[2], want[4])
            before, full = got[1], want[1]
            assert isinstance(before, bytes) and isinstance(full, bytes)
            assert full.endswith(before) and len(before) >= min(len(full), recent)
            if not isinstance(got[0], int) or got[2] in (pexpect.TIMEOUT, pexpect.EOF):
                break
