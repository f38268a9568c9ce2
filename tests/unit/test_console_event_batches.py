"""The console goes to the event log one event per read (EventLog.emit_lines, kind
"lines"): what is written, what listeners get, and that every reader shows such a batch
line by line, exactly as the per-line events of older runs (which must still render)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.console.boot import LineBlock
from harness.event_format import (
    describe,
    format_line,
    format_lines,
    latest_line,
    per_line,
    severity,
)
from harness.event_tail import EventTail, raw_field
from harness.events import LINES, EventLog, read_events
from harness.live_model import HostView, not_a_line

AT = 1_700_000_000.125
READ = ["[    3.1] Linux version 6.1.0", 'say "hi" \\ \ttab', "\x1b[31mred\x1b[0m ünï",
        "[   12.5] EDAC MC0: 1 CE"]


def batch(lines: list[str], at: float = AT) -> dict[str, Any]:
    return {"at": at, "run": "r", "host": "h", "source": "console", "kind": "lines",
            "command_id": None, "lines": lines}


def test_one_event_per_read_with_the_reads_time(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", "r", "h")
    heard: list[dict[str, Any]] = []
    log.subscribe(heard.append)
    block = LineBlock(READ, "\n".join(READ), plain=False)  # as SerialChannel hands it
    event = log.emit_lines("console", block, AT)
    assert log.emit_lines("console", [], AT) is None  # nothing read: nothing written
    log.close()
    raw = (tmp_path / "events.jsonl").read_bytes().splitlines()
    assert len(raw) == 1
    [written] = read_events(tmp_path / "events.jsonl")
    assert written == event == heard[0] == batch(READ)
    assert type(written["lines"]) is list and type(heard[0]["lines"]) is list
    # The common fields keep json's spacing: the tail's raw filters still find them.
    assert raw_field(raw[0], "kind") == LINES and raw_field(raw[0], "source") == "console"
    assert not not_a_line(raw[0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
                min_size=1, max_size=20))
def test_any_lines_come_back_as_they_went_in(tmp_path_factory: Any, lines: list[str]) -> None:
    path = tmp_path_factory.mktemp("batch") / "events.jsonl"
    log = EventLog(path, "r", "h")
    log.emit_lines("console", lines, AT)
    log.close()
    raw = path.read_text(encoding="utf-8")
    assert raw.count("\n") == 1  # one JSON line, whatever the lines hold
    assert json.loads(raw)["lines"] == lines


def test_a_batch_renders_as_the_per_line_events_of_older_runs() -> None:
    old = [{"at": AT, "run": "r", "host": "h", "source": "console", "kind": "line",
            "command_id": None, "text": line} for line in READ]
    new = batch(READ)
    assert format_lines(new) == [format_line(e) for e in old]
    assert [format_lines(e) for e in old] == [[format_line(e)] for e in old]
    assert format_lines(new)[1].endswith('console   line          say "hi" \\  tab')
    assert format_lines(new)[2].endswith("line          red ünï")  # escapes removed
    assert per_line(new) == old
    assert per_line(old[0]) == [old[0]]
    assert latest_line(new) == old[-1] and latest_line(old[0]) == old[0]
    assert describe(new) == READ[-1]
    assert severity(new) == "info"
    assert severity({**new, "stream": "stderr"}) == "warning"
    assert format_lines({**new, "stream": "stderr"})[0].endswith("[stderr] [    3.1] Linux "
                                                                  "version 6.1.0")
    # Odd batches do not break a view: no lines, or a non-list from some other writer.
    assert format_lines(batch([])) == [] and per_line(batch([])) == []
    assert latest_line(batch([])) == batch([])
    assert format_lines({**new, "lines": "oops"}) == []


def test_live_view_skips_batches_but_shows_the_latest_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, "r", "h")
    log.emit("console", "line", text="an older run's single line")
    log.emit_lines("console", ['"kind": "state" in a console line', "first"], AT)
    log.emit("harness", "state", to="SMART", stage="smart")
    log.emit_lines("console", ["second", "latest line"], AT + 1)
    log.close()
    events = EventTail(path).read(want=not_a_line, keep_latest=True)
    assert [e["kind"] for e in events] == ["state", "lines"]
    view = HostView("h")
    for event in events:
        view.apply(event)
    assert view.last_event_text() == "line: latest line"
    assert view.to_json(AT + 2)["last_event_at"] == AT + 1
    assert view.state == "SMART"
