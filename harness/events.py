"""The per-host event stream: JSON lines on disk, one file per host per run.

Every event carries run, host, source (console / ssh / local / harness / power),
kind, command id and time, so logs from every transport read as one stream.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from harness.models import to_jsonable

log = logging.getLogger(__name__)

#: Called with every event after it is on disk (live view, MQTT, terminal progress).
Listener = Callable[[dict[str, Any]], None]

#: A run token as harness.token makes them (v1.<expiry>.<43 url-safe base64 characters>).
#: The host's kernel command line carries one, and `dmesg` prints that command line, so
#: any command output can hold it. Matched by shape, so a token from another run (a held
#: host booted by an earlier run) is caught too. Spelled out here, not imported, so the
#: event log needs no token module; tests/unit/test_redaction.py checks the two agree.
TOKEN_SHAPE = re.compile(r"v1\.(?:0|[1-9]\d{0,11})\.[A-Za-z0-9_-]{43}")
REDACTED_TOKEN = "v1.<run token redacted>"

#: Kind of an event holding several output lines (`lines`: list of str) of one read; one
#: line per event is kind "line" (`text`), as command output and older runs' consoles have.
LINES = "lines"
LINE = "line"


def redact(text: str) -> str:
    """`text` with every run token replaced (cheap when there is none: one substring test)."""
    if "v1." not in text:
        return text
    return TOKEN_SHAPE.sub(REDACTED_TOKEN, text)

#: Called with every EventLog this process opens (see on_open).
_open_listeners: list[Callable[[EventLog], None]] = []


def on_open(callback: Callable[[EventLog], None]) -> Callable[[], None]:
    """Call `callback` with each EventLog opened from now on, before its first event.

    For in-process watchers that cannot know where logs are opened (pytest's live progress
    subscribes to every host of the run this way). Returns the function that unregisters.
    """
    _open_listeners.append(callback)

    def remove() -> None:
        if callback in _open_listeners:
            _open_listeners.remove(callback)

    return remove


class EventLog:
    """Append-only JSON-lines writer; flushed per event so a crash loses nothing."""

    def __init__(self, path: Path, run_id: str, host: str) -> None:
        self.path = path
        self.run_id = run_id
        self.host = host
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        for opened in list(_open_listeners):
            try:
                opened(self)
            except Exception:  # a broken watcher must never stop a host from being vetted
                log.exception("event log open listener %r failed", opened)

    def subscribe(self, listener: Listener) -> None:
        """Hand every later event to ``listener``; its failures never reach the emitter."""
        self._listeners.append(listener)

    def emit(
        self, source: str, kind: str, command_id: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        event = {
            "at": time.time(),
            "run": self.run_id,
            "host": self.host,
            "source": source,
            "kind": kind,
            "command_id": command_id,
            **{k: to_jsonable(v) for k, v in fields.items()},
        }
        return self._publish(event)

    def emit_lines(self, source: str, lines: Sequence[str], at: float) -> dict[str, Any] | None:
        """One event for all the lines of one console read: kind "lines", field `lines`,
        `at` the read's time (None when there are no lines).

        Why not one `emit` per line: a JSON encode, a write and a flush per line capped a
        run's console near 3.4 MB/s (docs/BENCHMARKS.md); per read it costs what a read
        costs. Readers expand it to one line each (harness.event_format.per_line).
        The lines are plain strings already, so no to_jsonable pass over them.
        """
        if not lines:
            return None
        event: dict[str, Any] = {"at": at, "run": self.run_id, "host": self.host,
                                 "source": source, "kind": LINES, "command_id": None}
        # The lines are nearly all of the event's bytes: orjson encodes them ~30x faster
        # than json (0.2 against 6-7 ns per byte here, which would be most of what the
        # console's path costs); the common fields keep json's spacing, which
        # harness.event_tail.raw_field reads.
        head = json.dumps(event, ensure_ascii=False)
        line = f'{head[:-1]}, "lines": {orjson.dumps(lines).decode()}}}'
        event["lines"] = list(lines)
        return self._publish(event, line)

    def _publish(self, event: dict[str, Any], line: str | None = None) -> dict[str, Any]:
        """Write `event` (redacted) as one JSON line (`line`, if it is encoded already),
        then hand it to the listeners."""
        if line is None:
            line = json.dumps(event, ensure_ascii=False)
        clean = redact(line)
        if clean != line:  # a token in some field: write, and hand on, the redacted event
            line = clean
            event = json.loads(line)
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken live view must never break the run
                log.exception("event listener %r failed", listener)
        return event

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    """All events of one log; a torn last line (crash mid-write) is skipped."""
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
