"""The JSON summary of a run, derived from the store alone (schema: docs/REPORT-JSON.md).

Deriving it from the store means a crashed or interrupted run still gets a truthful
summary of everything recorded before the crash.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any

from harness.errors import VetError
from harness.notify import notification_counts
from harness.states import State, stage_index
from harness.store import Store
from harness.summary import stage_outcomes, stage_warnings

SCHEMA = "vet-run-summary/2"
#: Boot measurements are named boot_<step>_s: seconds from power-on to that console step.
_BOOT_STEP = re.compile(r"boot_(?P<step>.+)_s")


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="milliseconds")


def _verdict(state: str) -> str:
    if state == State.COMPLETED.value:
        return "passed"
    if state in (State.FAILED.value, State.HOLDING.value, State.RELEASED.value):
        return "failed"
    return "incomplete"


def _stage_times(tests: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """A stage runs from its first test's start to its last test's end."""
    if not tests:
        return None, None
    return (min(t["started_at"] for t in tests),
            max(t["started_at"] + t["duration_s"] for t in tests))


def _boot_timeline(measurements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The boot steps the console showed, in the order they happened."""
    steps = []
    for m in measurements:
        match = _BOOT_STEP.fullmatch(m["name"])
        if m["stage"] == "boot" and match is not None:
            steps.append({"step": match["step"], "after_s": m["value"]})
    return sorted(steps, key=lambda s: float(s["after_s"]))


def _hold(store: Store, run_id: str, name: str, now: float) -> dict[str, Any] | None:
    """The host's latest hold in this run (the holds table is filled by harness.hold).

    Only these columns are read, so a hold's key material, should a later schema keep it
    there, can never reach a report.
    """
    rows = store.query(
        "SELECT stage, reason, opened_at, expires_at, released_at, released_by FROM holds "
        "WHERE run_id = ? AND host = ? ORDER BY opened_at DESC, id DESC LIMIT 1",
        (run_id, name))
    if not rows:
        return None
    row = rows[0]
    if row["released_at"] is not None:
        status = "released"
    elif row["expires_at"] is not None and row["expires_at"] <= now:
        status = "expired"
    else:
        status = "open"
    return {"status": status, "stage": row["stage"], "reason": row["reason"],
            "opened_at": iso(row["opened_at"]), "expires_at": iso(row["expires_at"]),
            "released_at": iso(row["released_at"]), "released_by": row["released_by"]}


def _host_summary(store: Store, run_id: str, host: dict[str, Any],
                  outcomes: dict[str, dict[str, Any]], now: float,
                  warnings: dict[str, list[str]] | None = None) -> dict[str, Any]:
    name = host["name"]
    tests = store.test_results(run_id, name)
    stages = []
    for stage in sorted(outcomes, key=stage_index):
        cell = outcomes[stage]
        ran = [t for t in tests if t["stage"] == stage]
        started, ended = _stage_times(ran)
        stages.append({
            "stage": stage,
            "outcome": cell["outcome"],
            "started_at": iso(started),
            "ended_at": iso(ended),
            "duration_s": round(cell["duration_s"], 3),
            "reason": cell["reason"],
            "warnings": (warnings or {}).get(stage, []),
            "tests": [
                {"nodeid": t["nodeid"], "outcome": t["outcome"], "started_at": iso(t["started_at"]),
                 "duration_s": round(t["duration_s"], 3), "reason": t["reason"]}
                for t in ran
            ],
        })
    failed = next((s for s in stages if s["outcome"] in ("failed", "error")), None)
    measurements = store.measurements(run_id, name)
    return {
        "name": name,
        "state": host["state"],
        "verdict": _verdict(host["state"]),
        "failed_stage": failed["stage"] if failed else None,
        "reason": failed["reason"] if failed else "",
        "stages": stages,
        "measurements": [
            {"stage": m["stage"], "name": m["name"], "value": m["value"], "unit": m["unit"],
             "at": iso(m["at"])}
            for m in measurements
        ],
        "boot_timeline": _boot_timeline(measurements),
        "spec_diffs": [
            {k: d[k] for k in ("item", "expected", "actual", "severity", "message")}
            for d in store.spec_diffs(run_id, name)
        ],
        "hold": _hold(store, run_id, name, now),
        "transitions": [
            {"from": t["from_state"], "to": t["to_state"], "stage": t["stage"],
             "reason": t["reason"], "at": iso(t["at"])}
            for t in store.transitions(run_id, name)
        ],
    }


def build_summary(store: Store, run_id: str, now: float | None = None) -> dict[str, Any]:
    """The run's summary; `now` (default: the clock) decides whether an open hold expired."""
    run = store.run(run_id)
    if run is None:
        raise VetError(f"run {run_id!r} is not in the store {store.path}; `vet runs` lists runs")
    outcomes = stage_outcomes(store, run_id)
    now = time.time() if now is None else now
    warned = stage_warnings(store, run_id)
    hosts = [_host_summary(store, run_id, h, outcomes.get(h["name"], {}), now,
                           warned.get(h["name"], {}))
             for h in store.hosts(run_id)]
    verdicts = [h["verdict"] for h in hosts]
    return {
        "schema": SCHEMA,
        "run": {
            "id": run["id"],
            "status": run["status"],
            "profile": run["profile"],
            "inventory": run["inventory"],
            "started_at": iso(run["started_at"]),
            "ended_at": iso(run["ended_at"]),
            "controller": run["controller"],
            "vet_version": run["vet_version"],
            "params": json.loads(run["params_json"]),
        },
        "totals": {
            "hosts": len(hosts),
            "passed": verdicts.count("passed"),
            "failed": verdicts.count("failed"),
            "held": sum(h["hold"] is not None and h["hold"]["status"] == "open" for h in hosts),
            "incomplete": verdicts.count("incomplete"),
        },
        "notifications": notification_counts(store, run_id),
        "hosts": hosts,
    }


def write_summary(store: Store, run_id: str, path: Path) -> Path:
    """Write atomically: a reader never sees half a summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(build_summary(store, run_id), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
