"""Per-host, per-stage summary of a run, read back from the store.

The same table ends `pytest`, `make demo` and `vet report`, so it is built from the
store alone: it is true for runs spread over xdist workers and for finished runs.
"""

from __future__ import annotations

from typing import Any

from harness.states import STAGES
from harness.store import Store

#: Which test outcome speaks for a stage: a failure over a pass, and a pass over a
#: skip (a stage whose one test did not apply but whose others passed, passed).
_WORST = ("error", "failed", "passed", "skipped")


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


def render_summary(store: Store, run_id: str) -> str:
    """A plain-text table (no colour: it must read the same in CI logs)."""
    outcomes = stage_outcomes(store, run_id)
    states = {h["name"]: h for h in store.hosts(run_id)}
    used = [s for s in STAGES if any(s in stages for stages in outcomes.values())]
    header = ["host", *used, "state"]
    rows = [header]
    for name in sorted(outcomes):
        cells = [name]
        for stage in used:
            cell = outcomes[name].get(stage)
            cells.append("-" if cell is None else
                         f"{cell['outcome'].upper() if cell['outcome'] != 'passed' else 'passed'}"
                         f" {cell['duration_s']:.0f}s")
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
    return "\n".join(lines)
