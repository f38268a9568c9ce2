"""The run store's cross-process write lock (harness/write_lock.py) with real processes:
a writer waits for another process's lock and goes on the moment it is released or its
holder dies; a lock held too long is a StoreError that names the lock file and the fix,
not a hang; concurrent writer processes lose no row."""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import StoreError
from harness.store import Store
from harness.write_lock import LockTimeout

HOLDER = """\
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def _holder(lock_file: Path) -> subprocess.Popen[str]:
    """Another process holding the store's write lock until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_file)], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    assert ready and proc.stdout.readline() == "held\n", "the holder never took the lock"
    return proc


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "vet.sqlite") as opened:
        opened.start_run("r1", "quick", "inv")
        yield opened


def _lock_file(store: Store) -> Path:
    return store.path.with_name(f"{store.path.name}-writelock")


def _write_in_thread(store: Store) -> tuple[threading.Thread, list[BaseException | None]]:
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            store.add_event("r1", "node01", "harness", "probe")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    return thread, outcome


def _events(store: Store) -> int:
    return int(store.query("SELECT COUNT(*) AS n FROM events")[0]["n"])


def test_a_writer_waits_for_the_holder_and_goes_on_when_it_releases(store: Store) -> None:
    assert _lock_file(store).exists()
    holder = _holder(_lock_file(store))
    try:
        thread, outcome = _write_in_thread(store)
        thread.join(timeout=0.5)
        assert thread.is_alive(), "the write did not wait for the other process's lock"
        reader = sqlite3.connect(store.path)  # store itself is busy in the waiting write
        try:
            assert reader.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)
        finally:
            reader.close()
        assert holder.stdin is not None
        released = time.monotonic()
        holder.stdin.close()  # the holder exits, its lock goes with it
        thread.join(timeout=10)
        assert not thread.is_alive() and outcome == [None]
        assert time.monotonic() - released < 5
        assert _events(store) == 1
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_a_killed_holder_releases_the_lock(store: Store) -> None:
    holder = _holder(_lock_file(store))
    thread, outcome = _write_in_thread(store)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    thread.join(timeout=10)
    assert not thread.is_alive() and outcome == [None]
    assert _events(store) == 1


def test_a_lock_held_too_long_is_a_clear_error_then_writes_go_on(store: Store) -> None:
    store.WRITE_LOCK_TIMEOUT_S = 0.3
    holder = _holder(_lock_file(store))
    try:
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            store.add_event("r1", "node01", "harness", "probe")
        assert time.monotonic() - started < 5
        message = str(caught.value)
        assert str(store.path) in message and "held its write lock for 0.3 s" in message
        assert f"fuser {_lock_file(store)}" in message
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    store.add_event("r1", "node01", "harness", "after")  # the store works again
    assert [e["kind"] for e in store.query("SELECT kind FROM events")] == ["after"]
    waiters = [t for t in threading.enumerate() if t.name.startswith("store-lock-")]
    for waiter in waiters:  # the abandoned waiter took the freed lock and dropped it
        waiter.join(timeout=10)
        assert not waiter.is_alive()


def _writer(path: str, worker: int, rows: int) -> None:
    with Store(path) as store:
        for i in range(rows):
            store.add_event("r1", f"host{worker}", "ssh", "line", {"i": i})


def test_concurrent_writer_processes_lose_no_row(tmp_path: Path) -> None:
    path = str(tmp_path / "vet.sqlite")
    Store(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, 200)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    with Store(path) as store:
        counts = store.query("SELECT host, COUNT(*) AS n FROM events GROUP BY host")
    assert sorted((r["host"], r["n"]) for r in counts) == [(f"host{w}", 200) for w in range(4)]


def test_a_forked_child_takes_its_own_lock(store: Store) -> None:
    """A child forked while the parent holds the lock must wait for it, not share it."""
    store._write_lock.acquire(5)
    try:
        pid = os.fork()
        if pid == 0:  # the child, through the inherited Store's lock
            code = 3  # got the lock its parent holds: shared by mistake
            try:
                store._write_lock.acquire(0.3)
            except LockTimeout:
                code = 0
            except BaseException:
                code = 4
            os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        store._write_lock.release()
    assert os.waitstatus_to_exitcode(status) == 0
