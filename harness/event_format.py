"""One event as one line an operator reads, and how much it matters.

`vet logs`, the "last event" column of `vet status` and the pytest live lines all show
events; this keeps them saying the same thing in the same words.
"""

from __future__ import annotations

import re
import time
from typing import Any

#: Fields every event has; the rest is what a kind has to say.
_COMMON = frozenset({"at", "run", "host", "source", "kind", "command_id"})

#: Severity names, worst first; the CLI maps them to colours.
SEVERITIES = ("error", "warning", "success", "state", "info", "progress", "debug")

#: Escape sequences and other control characters a host may print on its console: they
#: would move the operator's cursor or change colours if shown raw.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


def clean(text: str) -> str:
    """`text` on one line with no terminal control sequences."""
    return _CONTROL.sub("", text.replace("\t", " ").replace("\r", "").replace("\n", " "))


def clock(at: float | None) -> str:
    """Local wall-clock time with milliseconds (runs last hours; the run id has the date)."""
    if at is None:
        return "--:--:--.---"
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def duration(seconds: float | None) -> str:
    """12s, 3m05s, 2h07m: short enough for a table cell."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def describe_progress(event: dict[str, Any]) -> str:
    """'42% stress-ng 4 workers (1m10s, ~1m35s left)' from a progress event."""
    parts = []
    percent = event.get("percent")
    if isinstance(percent, int | float):
        parts.append(f"{percent:.0f}%")
    if event.get("figure"):
        parts.append(str(event["figure"]))
    times = []
    if isinstance(event.get("elapsed_s"), int | float):
        times.append(duration(event["elapsed_s"]))
    if isinstance(event.get("remaining_s"), int | float):
        times.append(f"~{duration(event['remaining_s'])} left")
    if times:
        parts.append(f"({', '.join(times)})")
    return " ".join(parts)


def batched_lines(event: dict[str, Any]) -> list[str] | None:
    """The lines of a batched output event (kind "lines", harness.events.EventLog.emit_lines:
    one per console read), or None for any other event (a "line" event has one `text`)."""
    if event.get("kind") != "lines":
        return None
    lines = event.get("lines")
    if not isinstance(lines, list):
        return []
    return [line if isinstance(line, str) else str(line) for line in lines]


def per_line(event: dict[str, Any]) -> list[dict[str, Any]]:
    """`event`, or for a batched one a "line" event per line it holds (its time, source and
    command): what a reader that shows output line by line wants, whichever way the run
    wrote its console (per read now, per line before)."""
    lines = batched_lines(event)
    if lines is None:
        return [event]
    common = {k: v for k, v in event.items() if k != "lines"}
    return [{**common, "kind": "line", "text": line} for line in lines]


def latest_line(event: dict[str, Any]) -> dict[str, Any]:
    """`event`, or for a batched one the "line" event of its last line (a live view's
    "last event"); a batch with no lines stays as it is."""
    lines = batched_lines(event)
    if not lines:
        return event
    common = {k: v for k, v in event.items() if k != "lines"}
    return {**common, "kind": "line", "text": lines[-1]}


def describe(event: dict[str, Any]) -> str:
    """What the event says, without its time, source and kind (a batch of lines: its last
    line; format_lines shows them all)."""
    kind = event.get("kind")
    if kind == "lines":
        event = latest_line(event)
        kind = event.get("kind")
    if kind == "line":
        text = str(event.get("text", ""))
        return f"[stderr] {text}" if event.get("stream") == "stderr" else text
    if kind == "command-start":
        return f"$ {event.get('command', '')}"
    if kind == "command-end":
        return f"exit {event.get('exit_status')} after {event.get('duration_s')} s"
    if kind == "command-error":
        return f"command failed: {event.get('error', '')}"
    if kind == "state":
        reason = event.get("reason") or ""
        return f"{event.get('from', '?')} -> {event.get('to', '?')}" + (
            f": {reason}" if reason else "")
    if kind == "stage-start":
        return f"stage {event.get('stage')} started"
    if kind == "progress":
        return f"{event.get('stage')} {describe_progress(event)}"
    if kind == "measurement":
        return f"{event.get('name')} = {event.get('value')} {event.get('unit', '')}".rstrip()
    if kind == "finding":
        return f"{event.get('severity', '?')}: {event.get('message', '')}"
    rest = {k: v for k, v in event.items() if k not in _COMMON}
    return " ".join(f"{k}={v}" for k, v in rest.items())


def severity(event: dict[str, Any]) -> str:
    """One of SEVERITIES: what colour the event deserves."""
    kind = event.get("kind")
    if kind == "finding":
        level = str(event.get("severity", "")).lower()
        return {"critical": "error", "warning": "warning"}.get(level, "info")
    if kind == "command-error":
        return "error"
    if kind == "command-end":
        return "info" if event.get("exit_status") == 0 else "warning"
    if kind == "state":
        to = event.get("to")
        if to in ("Failed", "Holding"):
            return "error"
        return "success" if to == "Completed" else "state"
    if kind == "stage-start":
        return "state"
    if kind == "progress":
        return "progress"
    if kind == "measurement":
        return "debug"
    if kind in ("line", "lines") and event.get("stream") == "stderr":
        return "warning"
    return "info"


def format_line(event: dict[str, Any]) -> str:
    """`09:31:02.125 console  line          [    3.1] Linux version ...`"""
    return (f"{clock(event.get('at'))} {event.get('source', '?'):<9} "
            f"{event.get('kind', '?'):<13} {clean(describe(event))}")


def format_lines(event: dict[str, Any]) -> list[str]:
    """format_line for each line an event holds: one printed line per console line, a
    batch shown exactly as the per-line events of older runs were."""
    lines = batched_lines(event)
    if lines is None:
        return [format_line(event)]
    prefix = f"{clock(event.get('at'))} {event.get('source', '?'):<9} {'line':<13} "
    if event.get("stream") == "stderr":
        prefix += "[stderr] "
    return [prefix + clean(line) for line in lines]
