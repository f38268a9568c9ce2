"""Where each host of a run is now: the model behind `vet status` and the live lines.

A HostView folds a host's events (state changes, stage starts, progress, everything
else as "last event") into what a live view shows. RunView adds the store, which is the
truth for states and verdicts, and refreshes incrementally: event files are tailed by
offset and the store is re-read only when SQLite says another connection wrote to it.
Both work while pytest runs elsewhere and after it ended.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.event_format import clean, describe, describe_progress, latest_line
from harness.event_tail import EventTail, raw_field
from harness.store import Store
from harness.summary import stage_outcomes

#: States in which a host no longer works: its clock stops there.
DONE_STATES = frozenset({"Completed", "Failed", "Holding", "Released"})


#: Events that say nothing an operator watches for: never the "last event".
_BOOKKEEPING = frozenset({"host-closed"})


@dataclass
class HostView:
    """One host as a live view shows it."""

    name: str
    state: str = "Registered"
    stage: str | None = None
    reason: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    progress: dict[str, Any] | None = None
    last_event: dict[str, Any] | None = None
    verdict: str = "-"
    stages: dict[str, str] = field(default_factory=dict)

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one event of this host into the view."""
        kind = event.get("kind")
        at = event.get("at")
        if isinstance(at, int | float) and (self.started_at is None or at < self.started_at):
            self.started_at = float(at)
        if kind == "progress":
            self.progress = event
            return
        if kind not in _BOOKKEEPING:
            self.last_event = latest_line(event)  # a batch of console lines: its last
        if kind == "state" and isinstance(event.get("to"), str):
            self.set_state(event["to"], event.get("stage"), str(event.get("reason") or ""),
                           at if isinstance(at, int | float) else None)
        elif kind == "stage-start" and event.get("stage"):
            self.stage = str(event["stage"])

    def set_state(self, state: str, stage: str | None, reason: str,
                  at: float | None) -> None:
        self.state = state
        if stage:
            self.stage = stage
        self.reason = reason
        self.finished_at = at if state in DONE_STATES else None

    @property
    def working(self) -> bool:
        return self.state not in DONE_STATES and self.state != "Registered"

    def current_progress(self) -> dict[str, Any] | None:
        """The latest progress event, if it belongs to the stage now running."""
        if self.progress is None or not self.working:
            return None
        if self.stage is not None and self.progress.get("stage") != self.stage:
            return None
        return self.progress

    def progress_text(self, now: float) -> str:
        """'42% figure (1m10s, ~1m35s left)', the clocks moved on to `now`."""
        progress = self.current_progress()
        if progress is None:
            return ""
        since = max(0.0, now - float(progress.get("at", now)))
        shown = dict(progress)
        if isinstance(shown.get("elapsed_s"), int | float):
            shown["elapsed_s"] = shown["elapsed_s"] + since
        if isinstance(shown.get("remaining_s"), int | float) and shown.get("percent") != 100:
            shown["remaining_s"] = max(0.0, shown["remaining_s"] - since)
        return clean(describe_progress(shown))

    def elapsed_s(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or now) - self.started_at

    def last_event_text(self) -> str:
        if self.last_event is None:
            return ""
        text = clean(describe(self.last_event))
        return f"{self.last_event.get('kind')}: {text}" if text else str(
            self.last_event.get("kind"))

    def to_json(self, now: float) -> dict[str, Any]:
        progress = self.current_progress()
        return {
            "name": self.name, "state": self.state, "stage": self.stage, "reason": self.reason,
            "percent": progress.get("percent") if progress else None,
            "figure": progress.get("figure") if progress else None,
            "progress": self.progress_text(now) or None,
            "started_at": self.started_at, "elapsed_s": self.elapsed_s(now),
            "last_event": self.last_event_text() or None,
            "last_event_at": self.last_event.get("at") if self.last_event else None,
            "verdict": self.verdict, "stages": self.stages,
        }


def verdict(cells: dict[str, dict[str, Any]], state: str) -> str:
    """The verdict so far from the stages' outcomes: FAILED <stage>, PASSED, ok so far."""
    failed = [s for s, c in cells.items() if c["outcome"] in ("failed", "error")]
    if failed:
        return f"FAILED {failed[0]}"
    passed = sum(c["outcome"] == "passed" for c in cells.values())
    if state == "Completed":
        return f"PASSED ({passed} stage{'s' if passed != 1 else ''})"
    return f"ok so far ({passed} passed)" if passed else "-"


#: Kinds of output events: one line (`line`) or one read's lines (`lines`, the console).
OUTPUT_KINDS = frozenset({"line", "lines"})


def not_a_line(raw: bytes) -> bool:
    """Output lines only ever matter as the latest event: a view need not parse the rest."""
    return raw_field(raw, "kind") not in OUTPUT_KINDS


def events_path(run_dir: Path, host: str) -> Path:
    """reports/runs/<run>/<host>/events.jsonl, as harness.host.open_events writes it."""
    return run_dir / host / "events.jsonl"


class StoreChanges:
    """Tells whether another connection committed to the store since the last look.

    SQLite's `PRAGMA data_version` changes exactly then, so an unchanged store costs one
    pragma per tick instead of re-running every query.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._version: int | None = None

    def changed(self) -> bool:
        version = int(self._store.query("PRAGMA data_version")[0]["data_version"])
        changed = version != self._version
        self._version = version
        return changed


class RunView:
    """A run's hosts from the store and their event files, refreshed incrementally."""

    def __init__(self, store: Store, run_id: str, run_dir: Path) -> None:
        self.store = store
        self.run_id = run_id
        self.run_dir = run_dir
        self.run: dict[str, Any] = {}
        self.hosts: dict[str, HostView] = {}
        self._rows: dict[str, dict[str, Any]] = {}
        self._tails: dict[str, EventTail] = {}
        self._store_changes = StoreChanges(store)

    @property
    def finished(self) -> bool:
        return bool(self.run) and self.run.get("status") != "running"

    def refresh(self) -> None:
        """Read what changed: the store if it was written to, each event file's new lines."""
        if self._store_changes.changed():
            self._load_store()
        for name, view in self.hosts.items():
            tail = self._tails.setdefault(name, EventTail(events_path(self.run_dir, name)))
            for event in tail.read(want=not_a_line, keep_latest=True):
                view.apply(event)
            self._apply_row(view)  # the store is the truth for states, events only add

    def _load_store(self) -> None:
        self.run = self.store.run(self.run_id) or {}
        started = {r["host"]: r["first"] for r in self.store.query(
            "SELECT host, MIN(at) AS first FROM transitions WHERE run_id = ? GROUP BY host",
            (self.run_id,))}
        outcomes = stage_outcomes(self.store, self.run_id)
        for row in self.store.hosts(self.run_id):
            name = row["name"]
            view = self.hosts.setdefault(name, HostView(name))
            self._rows[name] = row
            if started.get(name) is not None:
                view.started_at = min(started[name], view.started_at or started[name])
            cells = outcomes.get(name, {})
            view.stages = {stage: cell["outcome"] for stage, cell in cells.items()}
            view.verdict = verdict(cells, row["state"])

    def _apply_row(self, view: HostView) -> None:
        row = self._rows.get(view.name)
        if row is not None:
            view.set_state(row["state"], row["stage"], row["reason"], row["updated_at"])

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        """The whole view as one JSON document (`vet status --json`)."""
        now = time.time() if now is None else now
        run = {key: self.run.get(key) for key in
               ("id", "status", "profile", "inventory", "started_at", "ended_at", "controller")}
        run["finished"] = self.finished
        return {"run": run, "hosts": [v.to_json(now) for _, v in sorted(self.hosts.items())]}

    def close(self) -> None:
        for tail in self._tails.values():
            tail.close()
