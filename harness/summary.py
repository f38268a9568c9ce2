"""Per-host, per-stage summary of a run, read back from the store.

The same table ends `pytest`, `make demo` and `vet report`, so it is built from the
store alone: it is true for runs spread over xdist workers and for finished runs.

A stage that passed with warnings (a lost PSU redundancy, a slow link, an inconclusive
SMART read) says so in its cell, and the warnings are listed below the table: they are
read back from what the stage already stores, the judgements it recorded (any record
holding `{"verdict", "findings"}`, at any depth) and the spec diffs of severity warning,
so no stage has to report them twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from harness.states import STAGES, stage_index
from harness.store import Store

#: Which test outcome speaks for a stage: a failure over a pass, and a pass over a
#: skip (a stage whose one test did not apply but whose others passed, passed).
_WORST = ("error", "failed", "passed", "skipped")
_VERDICTS = ("healthy", "warning", "failing")
#: Warnings listed per host and stage under the table; the JSON summary has them all.
SHOWN_WARNINGS = 3


def stage_outcomes(store: Store, run_id: str) -> dict[str, dict[str, dict[str, Any]]]:
    """host -> stage -> {outcome, duration_s, reason}, the outcome that speaks for each stage."""
    table: dict[str, dict[str, dict[str, Any]]] = {h["name"]: {} for h in store.hosts(run_id)}
    for row in store.test_results(run_id):
        stages = table.setdefault(row["host"], {})
        cell = stages.setdefault(row["stage"], {"outcome": "skipped", "duration_s": 0.0,
                                                "reason": ""})
        cell["duration_s"] += row["duration_s"]
        if _WORST.index(row["outcome"]) < _WORST.index(cell["outcome"]):
            cell["outcome"] = row["outcome"]
            cell["reason"] = row["reason"]
    return table


def _judged_warnings(value: Any) -> Iterator[str]:
    """The warning sentences of every Judgement (as stored: JSON) inside `value`."""
    if isinstance(value, dict):
        findings = value.get("findings")
        if value.get("verdict") in _VERDICTS and isinstance(findings, list):
            for finding in findings:
                if (isinstance(finding, dict) and finding.get("verdict") == "warning"
                        and isinstance(finding.get("reason"), str)):
                    yield finding["reason"]
            return
        for item in value.values():
            yield from _judged_warnings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _judged_warnings(item)


def stage_warnings(store: Store, run_id: str) -> dict[str, dict[str, list[str]]]:
    """host -> stage -> the warnings its judgements and spec diffs recorded (each once,
    in the order recorded)."""
    table: dict[str, dict[str, list[str]]] = {}

    def add(host: str, stage: str, reason: str) -> None:
        found = table.setdefault(host, {}).setdefault(stage, [])
        if reason not in found:
            found.append(reason)

    for row in store.query("SELECT host, item, message FROM spec_diffs WHERE run_id = ? "
                           "AND severity = 'warning' ORDER BY id", (run_id,)):
        add(row["host"], "spec", f"{row['item']}: {row['message']}")
    for row in store.query("SELECT host, stage, json FROM records WHERE run_id = ? "
                           "ORDER BY id", (run_id,)):
        for reason in _judged_warnings(json.loads(row["json"])):
            add(row["host"], row["stage"], reason)
    return table


def _cell(cell: dict[str, Any] | None, warnings: int) -> str:
    if cell is None:
        return "-"
    outcome = cell["outcome"]
    if outcome != "passed":
        return f"{outcome.upper()} {cell['duration_s']:.0f}s"
    marker = f" ({warnings}w)" if warnings else ""
    return f"passed{marker} {cell['duration_s']:.0f}s"


def render_summary(store: Store, run_id: str) -> str:
    """A plain-text table (no colour: it must read the same in CI logs)."""
    outcomes = stage_outcomes(store, run_id)
    warned = stage_warnings(store, run_id)
    states = {h["name"]: h for h in store.hosts(run_id)}
    used = [s for s in STAGES if any(s in stages for stages in outcomes.values())]
    header = ["host", *used, "state"]
    rows = [header]
    for name in sorted(outcomes):
        cells = [name]
        for stage in used:
            cells.append(_cell(outcomes[name].get(stage),
                               len(warned.get(name, {}).get(stage, ()))))
        cells.append(states.get(name, {}).get("state", "?"))
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    reasons = [
        f"  {name} {stage}: {cell['reason']}"
        for name in sorted(outcomes)
        for stage, cell in outcomes[name].items()
        if cell["outcome"] in ("failed", "error") and cell["reason"]
    ]
    if reasons:
        lines += ["", "why:", *reasons]
    notes = []
    for name in sorted(outcomes):
        for stage, cell in sorted(outcomes[name].items(), key=lambda item: stage_index(item[0])):
            found = warned.get(name, {}).get(stage, [])
            if cell["outcome"] != "passed" or not found:
                continue
            notes += [f"  {name} {stage}: {reason}" for reason in found[:SHOWN_WARNINGS]]
            if len(found) > SHOWN_WARNINGS:
                notes.append(f"  {name} {stage}: ... and {len(found) - SHOWN_WARNINGS} more "
                             "(the JSON summary lists them all)")
    if notes:
        lines += ["", "passed with warnings (Nw):", *notes]
    return "\n".join(lines)
