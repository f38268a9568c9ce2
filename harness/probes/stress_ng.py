"""stress-ng results -> StressNgResult.

`parse_stress_ng` reads the text stress-ng writes to stderr with --metrics or
--metrics-brief (old versions log the table at `info:`, new ones at `metrc:`), plus its
summary lines. `parse_stress_ng_yaml` reads the file written with --yaml. Verification
failures and `fail:` lines are kept verbatim: they are the evidence for a failed stage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from harness.probes._common import (
    expect_dict,
    expect_list,
    fail,
    opt_float,
    opt_int,
    opt_str,
    small_int,
    type_name,
)

TOOL = "stress-ng"

_PREFIX = re.compile(r"stress-ng: (?P<level>[a-z]+):\s*\[\d+\]\s?(?P<msg>.*)")
_ROW = re.compile(
    r"(?P<name>[A-Za-z0-9][\w.+-]*)\s+(?P<ops>\d+)\s+(?P<real>[\d.]+)\s+(?P<usr>[\d.]+)\s+"
    r"(?P<sys>[\d.]+)\s+(?P<rate_real>[\d.]+)\s+(?P<rate_cpu>[\d.]+)"
    r"(?:\s+(?P<cpu_pct>[\d.]+))?(?:\s+(?P<rss>\d+))?\s*"
)
_ROW_START = re.compile(r"[A-Za-z0-9][\w.+-]*\s+\d")
_COUNT = re.compile(r"(?P<what>passed|failed|skipped|metrics untrustworthy):\s*(?P<n>\d+)\b")
_COMPLETED = re.compile(r"(?P<un>un)?successful run completed in (?P<dur>.*)")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(days?|hours?|mins?|secs?|s)\b")
_SECONDS = {"s": 1, "sec": 1, "secs": 1, "min": 60, "mins": 60, "hour": 3600, "hours": 3600,
            "day": 86400, "days": 86400}


@dataclass(frozen=True)
class StressorMetrics:
    """One row of the metrics table (or one YAML `metrics:` entry)."""

    name: str
    bogo_ops: int
    real_time_s: float
    usr_time_s: float
    sys_time_s: float
    bogo_ops_per_s_real: float
    bogo_ops_per_s_usr_sys: float
    cpu_used_pct: float | None = None
    max_rss_kb: int | None = None


@dataclass(frozen=True)
class StressNgResult:
    """Counts are None when this stress-ng version (or the YAML file) does not print them."""

    stressors: tuple[StressorMetrics, ...]
    passed: int | None
    failed: int | None
    skipped: int | None
    untrustworthy: int | None
    verification_failures: tuple[str, ...]
    completed_ok: bool | None
    duration_s: float | None
    version: str | None = None

    def stressor(self, name: str) -> StressorMetrics | None:
        return next((s for s in self.stressors if s.name == name), None)


def parse_stress_ng(text: str) -> StressNgResult:
    """Parse stress-ng's log text (stderr with --metrics / --metrics-brief)."""
    stressors: list[StressorMetrics] = []
    counts: dict[str, int] = {}
    failures: list[str] = []
    completed_ok: bool | None = None
    duration: float | None = None
    in_table = False
    seen = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        match = _PREFIX.match(line)
        if match is None:
            if "verification failed" in line:
                failures.append(line)
            continue
        seen = True
        level, msg = match.group("level"), match.group("msg").strip()
        if level == "fail" or "verification failed" in msg:
            failures.append(line)
        if "stressor" in msg and "bogo ops" in msg:
            in_table = True
            continue
        if in_table:
            row = _ROW.fullmatch(msg)
            if row is not None:
                stressors.append(_row(row))
                continue
            if msg.startswith("(secs)"):
                continue
            if _ROW_START.match(msg):
                fail(TOOL, f"line {number}: malformed metrics row {msg[:80]!r} (truncated?)")
            in_table = False
        count = _COUNT.match(msg)
        if count is not None:
            counts[count.group("what")] = _count(count.group("n"))
            continue
        completed = _COMPLETED.match(msg)
        if completed is not None:
            completed_ok = completed.group("un") is None
            duration = _duration(completed.group("dur"))
    if not seen:
        fail(TOOL, "no 'stress-ng: <level>: [pid]' lines (not stress-ng output?)")
    return StressNgResult(
        stressors=tuple(stressors),
        passed=counts.get("passed"),
        failed=counts.get("failed"),
        skipped=counts.get("skipped"),
        untrustworthy=counts.get("metrics untrustworthy"),
        verification_failures=tuple(failures),
        completed_ok=completed_ok,
        duration_s=duration,
    )


def _row(row: re.Match[str]) -> StressorMetrics:
    cpu_pct = row.group("cpu_pct")
    rss = row.group("rss")
    return StressorMetrics(
        name=row.group("name"),
        bogo_ops=_count(row.group("ops")),
        real_time_s=_num(row.group("real")),
        usr_time_s=_num(row.group("usr")),
        sys_time_s=_num(row.group("sys")),
        bogo_ops_per_s_real=_num(row.group("rate_real")),
        bogo_ops_per_s_usr_sys=_num(row.group("rate_cpu")),
        cpu_used_pct=_num(cpu_pct) if cpu_pct is not None else None,
        max_rss_kb=_count(rss) if rss is not None else None,
    )


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        fail(TOOL, f"expected a number in the metrics table, got {text[:40]!r}")


def _count(text: str) -> int:
    number = small_int(text)
    if number is None:
        fail(TOOL, f"expected a count, got {text[:40]!r}")
    return number


def _duration(text: str) -> float | None:
    """'5.00s', '3.04 secs', '1 min, 0.64 secs', '1 min' -> seconds."""
    parts = _DURATION_PART.findall(text)
    if not parts:
        return None
    return sum(float(value) * _SECONDS[unit] for value, unit in parts)


def parse_stress_ng_yaml(text: str) -> StressNgResult:
    """Parse the file stress-ng writes with --yaml FILE (its `metrics:` list)."""
    if not text.strip():
        fail(TOOL, "empty YAML file")
    try:
        document = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        # ValueError/OverflowError: PyYAML building a date or number it cannot represent.
        fail(TOOL, f"invalid YAML: {' '.join(str(exc).split())[:200]}")
    except RecursionError:
        fail(TOOL, "invalid YAML: nested too deeply")
    if not isinstance(document, dict):
        fail(TOOL, f"expected a YAML mapping with 'metrics', got {type_name(document)}")
    data: dict[str, object] = document
    if "metrics" not in data and "system-info" not in data:
        fail(TOOL, "YAML has neither 'metrics' nor 'system-info' (not a stress-ng --yaml file?)")
    info = data.get("system-info")
    version = None
    if info is not None:
        version = opt_str(TOOL, expect_dict(TOOL, info, "system-info"), "stress-ng-version",
                          "system-info")
    metrics = data.get("metrics")
    entries = [] if metrics is None else expect_list(TOOL, metrics, "metrics")
    stressors = [_yaml_metric(entry, f"metrics[{i}]") for i, entry in enumerate(entries)]
    return StressNgResult(
        stressors=tuple(stressors),
        passed=None,
        failed=None,
        skipped=None,
        untrustworthy=None,
        verification_failures=(),
        completed_ok=None,
        duration_s=None,
        version=version,
    )


def _yaml_metric(value: object, where: str) -> StressorMetrics:
    entry = expect_dict(TOOL, value, where)
    name = opt_str(TOOL, entry, "stressor", where)
    ops = opt_int(TOOL, entry, "bogo-ops", where)
    if name is None or ops is None:
        fail(TOOL, f"{where}: missing 'stressor' or 'bogo-ops' (truncated?)")

    def number(key: str) -> float:
        value = opt_float(TOOL, entry, key, where)
        if value is None:
            fail(TOOL, f"{where}: missing '{key}' (truncated?)")
        return value

    return StressorMetrics(
        name=name,
        bogo_ops=ops,
        real_time_s=number("wall-clock-time"),
        usr_time_s=number("user-time"),
        sys_time_s=number("system-time"),
        bogo_ops_per_s_real=number("bogo-ops-per-second-real-time"),
        bogo_ops_per_s_usr_sys=number("bogo-ops-per-second-usr-sys-time"),
        cpu_used_pct=opt_float(TOOL, entry, "cpu-usage-per-instance", where),
        max_rss_kb=opt_int(TOOL, entry, "max-rss", where),
    )
