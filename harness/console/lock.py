"""Who is driving a serial console right now: one flock'ed file per console URL.

A SerialChannel takes the lock when it opens a console (a run, or `vet console`
attached read-write) and writes what a second user needs into the file: the holder's
pid and host name, its console log and the socket where it shares the console
(harness.console.share). `vet console` only looks (`holder()`): a held lock means
attach read-only through that socket, unless forced.

flock, not a pid file: the kernel drops the lock when the holder dies, however it
dies, so a crashed run never leaves a console "busy". The holder removes the file on
release; a file left by a crash is unlocked, counts as free, and is removed by the
next `take()` of any console.

Files live in the runtime directory: $VET_RUNTIME_DIR, else $XDG_RUNTIME_DIR/vet, else
/tmp/vet-<uid> (mode 0700), under consoles/, named by a hash of the URL: the console
is the resource, whatever inventory host name reaches it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any


def runtime_dir() -> Path:
    """Where vet keeps per-machine live state (locks, sockets); created 0700."""
    base = os.environ.get("VET_RUNTIME_DIR")
    if base:
        path = Path(base)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "vet"
    else:
        path = Path(f"/tmp/vet-{os.getuid()}")
    consoles = path / "consoles"
    consoles.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def console_key(url: str) -> str:
    """A short file-name-safe key for one console URL (sockets allow ~100 bytes of path)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def lock_path(url: str) -> Path:
    return runtime_dir() / "consoles" / f"{console_key(url)}.lock"


class ConsoleLock:
    """A held console lock; `release()` drops it and removes its file."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def take(cls, url: str, info: dict[str, Any]) -> ConsoleLock | None:
        """The lock for `url` with `info` written in it, or None if someone holds it."""
        path = lock_path(url)
        _sweep(path.parent)
        for _ in range(5):  # the holder may remove the file between our open and flock
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"url": url, "pid": os.getpid(), **info}).encode())
            return cls(path, fd)
        return None

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # while still locked: nobody can take a stale inode
        os.close(self._fd)
        self._fd = None


def _sweep(directory: Path) -> None:
    """Remove what killed holders left (their locks are free): the directory stays tidy."""
    for stale in directory.glob("*.lock"):
        try:
            fd = os.open(stale, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(stale).st_ino == os.fstat(fd).st_ino:
                stale.with_suffix(".sock").unlink(missing_ok=True)
                stale.unlink()
        except (BlockingIOError, FileNotFoundError):
            pass  # held: a live holder; or gone meanwhile
        finally:
            os.close(fd)


def holder(url: str) -> dict[str, Any] | None:
    """What the current holder of `url`'s console wrote, or None when it is free."""
    path = lock_path(url)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 1 << 16).decode(errors="replace")
            try:
                info = json.loads(text)
            except json.JSONDecodeError:  # caught mid-write: held, details unknown
                info = {}
            return info if isinstance(info, dict) else {}
        return None  # a file left by a holder that died: free
    finally:
        os.close(fd)
