"""A cross-process write lock for the run store that wakes its waiters at once.

SQLite's own busy handler (busy_timeout) polls: a writer that finds the write lock taken
sleeps 1, 2, 5 ... up to 100 ms between tries, so under 4-8 xdist workers an unlucky one
keeps missing the lock and waits up to seconds for a write that takes 0.05 ms (measured
in benchmarks/bench_store.py). An flock(2) on a file beside the database queues writers
in the kernel instead: the next one runs the moment the holder releases, and the kernel
drops the lock of a process that dies. flock has no timeout, so a contended wait runs in
a helper thread and the caller waits on an Event with a deadline: never a hang. The
standard library has nothing with both properties (multiprocessing locks do not survive
a holder's death; filelock polls with sleeps), hence this module.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path


class LockTimeout(Exception):
    """The lock was not granted within the deadline."""


class WriteLock:
    """An exclusive flock on `path`, taken and released around each write transaction.

    One per process and store; callers serialise their threads themselves (Store holds
    its RLock around acquire/release). Safe across fork: a child opens its own file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pid = os.getpid()
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def acquire(self, timeout_s: float) -> None:
        """Hold the lock, or raise LockTimeout after `timeout_s`."""
        if os.getpid() != self._pid:  # a forked child must not share its parent's lock
            self._pid = os.getpid()
            self._fd = self._open()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        fd = self._fd
        granted = threading.Event()
        mutex = threading.Lock()
        abandoned = False

        def wait() -> None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with mutex:
                if abandoned:  # the caller gave up: this descriptor is ours to drop
                    os.close(fd)
                    return
                granted.set()

        threading.Thread(target=wait, name=f"store-lock-{self.path.name}", daemon=True).start()
        if granted.wait(timeout_s):
            return
        with mutex:
            if granted.is_set():
                return
            abandoned = True
        self._fd = self._open()  # the waiting thread keeps (and later closes) the old one
        raise LockTimeout(f"{self.path} was not free within {timeout_s:g} s")

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)
