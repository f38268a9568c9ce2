"""netboot's overlap of the SSH connect with the controller's bookkeeping after
VET-READY (harness.netboot.connect_while): both run at once, and neither's failure is
lost or leaves the other running."""

from __future__ import annotations

import threading
import time

import pytest

from harness.netboot import connect_while

DEADLINE_S = 10.0


def test_work_runs_while_the_connect_is_in_flight() -> None:
    work_started = threading.Event()
    connect_running = threading.Event()

    def connect() -> None:
        connect_running.set()
        # Sequential code would run the work only after this returns: it never would.
        assert work_started.wait(DEADLINE_S), "the work did not start during the connect"

    def work() -> None:
        assert connect_running.wait(DEADLINE_S), "the connect did not start before the work"
        work_started.set()

    before = time.time()
    connected_at = connect_while(connect, work)
    assert before <= connected_at <= time.time()


def test_a_failed_connect_is_raised_after_the_work_ended() -> None:
    done: list[str] = []

    def connect() -> None:
        raise ConnectionRefusedError("nothing listens")

    with pytest.raises(ConnectionRefusedError, match="nothing listens"):
        connect_while(connect, lambda: done.append("work"))
    assert done == ["work"]


def test_failed_work_waits_for_the_connect_to_end() -> None:
    ended = threading.Event()
    release = threading.Event()

    def connect() -> None:
        release.wait(DEADLINE_S)
        ended.set()

    def work() -> None:
        release.set()
        raise RuntimeError("event log full")

    with pytest.raises(RuntimeError, match="event log full"):
        connect_while(connect, work)
    assert ended.is_set(), "connect_while returned with the connect still running"
    assert not [t for t in threading.enumerate() if t.name.startswith("vet-ssh")]
