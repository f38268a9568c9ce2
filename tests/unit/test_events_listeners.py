"""EventLog listeners see every event after it is written; a failing one changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.events import EventLog, read_events


def test_listener_sees_event_after_it_is_on_disk(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", "run1", "h1")
    seen: list[tuple[dict[str, Any], int]] = []
    log.subscribe(lambda e: seen.append((e, len(read_events(log.path)))))
    log.emit("harness", "state", to="Queued")
    log.close()
    assert [(e["kind"], n) for e, n in seen] == [("state", 1)]


def test_failing_listener_does_not_stop_emit_or_others(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", "run1", "h1")
    seen: list[str] = []

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("dashboard down")

    log.subscribe(broken)
    log.subscribe(lambda e: seen.append(e["kind"]))
    event = log.emit("ssh", "line", text="hello")
    log.close()
    assert event["text"] == "hello"
    assert seen == ["line"]
    assert [e["kind"] for e in read_events(log.path)] == ["line"]
