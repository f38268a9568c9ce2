"""Progress events: throttled to one per interval, the final one always, and the ticking
helper around one long command (its thread waits on an Event, ends with the block)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from harness.console.local import LocalChannel
from harness.events import EventLog, read_events
from harness.host import HostUnderTest, Progress, RunContext
from harness.models import Connection, Host
from harness.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def progress_events(path: Path) -> list[dict[str, Any]]:
    return [e for e in read_events(path) if e["kind"] == "progress"]


def test_throttled_to_one_event_per_interval(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", "r1", "h1")
    clock = Clock()
    progress = Progress(log, "memory", total_s=100.0, interval_s=10.0, clock=clock)
    assert progress.update(figure="start")  # the first one always goes out
    clock.now += 4
    assert not progress.update()
    clock.now += 6  # 10 s after the first
    assert progress.update(figure="half way")
    clock.now += 1
    assert progress.update(final=True)  # the final one is never throttled
    log.close()
    events = progress_events(tmp_path / "events.jsonl")
    assert [(e["percent"], e["elapsed_s"], e["remaining_s"], e["figure"]) for e in events] == [
        (0.0, 0.0, None, "start"), (10.0, 10.0, 90.0, "half way"), (100.0, 11.0, 0.0, None)]
    assert all(e["stage"] == "memory" and e["source"] == "harness" for e in events)


def test_percent_from_the_caller_gives_the_remaining_time(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", "r1", "h1")
    clock = Clock()
    progress = Progress(log, "smart", total_s=None, interval_s=5.0, clock=clock)
    clock.now += 30
    progress.update(25.0, "1 disk still testing")
    log.close()
    [event] = progress_events(tmp_path / "events.jsonl")
    assert (event["percent"], event["elapsed_s"], event["remaining_s"]) == (25.0, 30.0, 90.0)


class CountingLog(EventLog):
    """Sets `enough` once `wanted` progress events were written."""

    def __init__(self, path: Path, wanted: int) -> None:
        super().__init__(path, "r1", "h1")
        self.wanted = wanted
        self.count = 0
        self.enough = threading.Event()

    def emit(self, source: str, kind: str, command_id: str | None = None,
             **fields: Any) -> dict[str, Any]:
        event = super().emit(source, kind, command_id, **fields)
        if kind == "progress":
            self.count += 1
            if self.count >= self.wanted:
                self.enough.set()
        return event


@pytest.fixture
def vetted(tmp_path: Path) -> HostUnderTest:
    store = Store(tmp_path / "vet.sqlite")
    ctx = RunContext("r1", "quick", store, tmp_path / "run")
    entry = Host("h1", Connection("local"))
    events = CountingLog(tmp_path / "events.jsonl", wanted=3)
    vetted = HostUnderTest(entry, LocalChannel("h1"), ctx, {}, events=events)
    vetted.enter_stage("cpu")
    return vetted


def test_ticking_emits_while_the_block_runs_and_stops_after(vetted: HostUnderTest,
                                                            tmp_path: Path) -> None:
    log = vetted.events
    assert isinstance(log, CountingLog)
    vetted.progress_interval_s = 0.05
    with vetted.ticking(60.0, "stress-ng cpu") as progress:
        # The block stands for the long command: it ends once two ticks went out.
        assert log.enough.wait(timeout=10), "the ticker emitted no progress"
    sent = progress.sent
    threads = [t for t in threading.enumerate() if t.name == "progress-h1"]
    assert not threads, "the ticker thread outlived the block"
    vetted.close()
    events = progress_events(tmp_path / "events.jsonl")
    assert len(events) == sent >= 4  # the start, two ticks or more, the final one
    assert events[0]["percent"] == 0.0 and events[-1]["percent"] == 100.0
    assert all(e["stage"] == "cpu" and e["figure"] == "stress-ng cpu" for e in events)
    assert all(0 < e["percent"] < 100 for e in events[1:-1])


def test_no_final_event_when_the_command_fails(vetted: HostUnderTest, tmp_path: Path) -> None:
    vetted.progress_interval_s = 60.0
    with pytest.raises(RuntimeError), vetted.ticking(10.0):
        raise RuntimeError("stress-ng died")
    vetted.close()
    assert [e["percent"] for e in progress_events(tmp_path / "events.jsonl")] == [0.0]
