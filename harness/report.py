"""The JSON summary of a run, derived from the store alone (schema: docs/REPORT-JSON.md).

Deriving it from the store means a crashed or interrupted run still gets a truthful
summary of everything recorded before the crash.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from harness.errors import VetError
from harness.states import State, stage_index
from harness.store import Store
from harness.summary import stage_outcomes

SCHEMA = "vet-run-summary/1"


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


def _host_summary(store: Store, run_id: str, host: dict[str, Any],
                  outcomes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    name = host["name"]
    tests = store.test_results(run_id, name)
    stages = []
    for stage in sorted(outcomes, key=stage_index):
        cell = outcomes[stage]
        stages.append({
            "stage": stage,
            "outcome": cell["outcome"],
            "duration_s": round(cell["duration_s"], 3),
            "reason": cell["reason"],
            "tests": [
                {"nodeid": t["nodeid"], "outcome": t["outcome"], "started_at": iso(t["started_at"]),
                 "duration_s": round(t["duration_s"], 3), "reason": t["reason"]}
                for t in tests if t["stage"] == stage
            ],
        })
    failed = next((s for s in stages if s["outcome"] in ("failed", "error")), None)
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
            for m in store.measurements(run_id, name)
        ],
        "spec_diffs": [
            {k: d[k] for k in ("item", "expected", "actual", "severity", "message")}
            for d in store.spec_diffs(run_id, name)
        ],
        "transitions": [
            {"from": t["from_state"], "to": t["to_state"], "stage": t["stage"],
             "reason": t["reason"], "at": iso(t["at"])}
            for t in store.transitions(run_id, name)
        ],
    }


def build_summary(store: Store, run_id: str) -> dict[str, Any]:
    run = store.run(run_id)
    if run is None:
        raise VetError(f"run {run_id!r} is not in the store {store.path}; `vet runs` lists runs")
    outcomes = stage_outcomes(store, run_id)
    hosts = [_host_summary(store, run_id, h, outcomes.get(h["name"], {}))
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
            "incomplete": verdicts.count("incomplete"),
        },
        "hosts": hosts,
    }


def write_summary(store: Store, run_id: str, path: Path) -> Path:
    """Write atomically: a reader never sees half a summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(build_summary(store, run_id), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
