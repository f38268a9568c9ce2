"""Following per-host event files while another process appends to them.

`vet status --watch`, `vet logs -f` and the pytest controller (whose xdist workers write
the events) all read the same JSON-lines files. EventTail reads only what was appended
since its last read (by offset, keeping a torn last line for later), so a tick costs what
changed, not the file's size. FileChanges wakes the reader when something under a folder
changes (inotify through watchdog), so following reacts at once instead of polling.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)


def raw_field(line: bytes, name: str) -> str | None:
    """The value of string field `name` of a raw event line, without parsing the line.

    EventLog writes run, host, source and kind before any field of the event's own, and
    JSON escapes quotes inside strings, so the first `"name": "` is the event's own field.
    """
    marker = f'"{name}": "'.encode()
    start = line.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = line.find(b'"', start)
    return line[start:end].decode(errors="replace") if end >= 0 else None


class EventTail:
    """Incremental reader of one events.jsonl; the file may not exist yet."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._file: BinaryIO | None = None
        self._inode: int | None = None
        self._partial = b""

    def read(self, want: Callable[[bytes], bool] | None = None,
             keep_latest: bool = False) -> list[dict[str, Any]]:
        """The complete events appended since the last call (none if the file is missing).

        `want` sees each raw line first: lines it refuses are not parsed at all (a burn-in's
        console lines are most of the file); `keep_latest` still parses the latest refused
        line, in its place, so a view's "latest event" stays true. A file replaced or
        truncated under us (a new run reusing the path) is read again from its start.
        """
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return []
        if self._file is None or stat.st_ino != self._inode or stat.st_size < self.offset:
            self._reopen(stat.st_ino)
        assert self._file is not None
        data = self._file.read()
        if not data:
            return []
        self.offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        if want is not None:
            wanted = [want(line) for line in lines]
            refused = [n for n, ok in enumerate(wanted) if not ok]
            if keep_latest and refused:
                wanted[refused[-1]] = True
            lines = [line for line, ok in zip(lines, wanted, strict=True) if ok]
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a line torn by a crash: skipped, like harness.events.read_events
            if isinstance(event, dict):
                events.append(event)
        return events

    def _reopen(self, inode: int) -> None:
        self.close()
        self._file = self.path.open("rb")
        self._inode = inode
        self.offset = 0
        self._partial = b""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


#: Changes that mean new data; opening or reading a file (ours included) is not one.
_DATA_CHANGES = frozenset({"modified", "created", "moved", "deleted", "closed"})


class _Wake(FileSystemEventHandler):
    def __init__(self, wake: threading.Event) -> None:
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _DATA_CHANGES:
            self._wake.set()


class FileChanges:
    """Sets `wake` whenever a file under a watched folder changes.

    Folders that do not exist yet cannot be watched; callers retry `watch` on their
    regular tick. If inotify refuses a watch (its per-user limit), the tick alone remains:
    slower to react, still correct.
    """

    def __init__(self, wake: threading.Event | None = None) -> None:
        self.wake = wake or threading.Event()
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        self._watched: set[Path] = set()

    def watch(self, folder: Path, recursive: bool = False) -> bool:
        """Watch `folder` (once); False if it does not exist (yet) or cannot be watched."""
        folder = folder.resolve()
        if folder in self._watched:
            return True
        if not folder.is_dir():
            return False
        try:
            self._observer.schedule(_Wake(self.wake), str(folder), recursive=recursive)
        except OSError as exc:
            log.warning("cannot watch %s for changes (%s); refreshing on the tick only",
                        folder, exc)
            return False
        self._watched.add(folder)
        return True

    def wait(self, timeout: float) -> bool:
        """Block until something changed or `timeout` passed; True if something changed."""
        fired = self.wake.wait(timeout)
        self.wake.clear()
        return fired

    def close(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def __enter__(self) -> FileChanges:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
