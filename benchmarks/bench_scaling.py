"""Parallel scaling: 1, 2 and 4 lab guests through the quick profile (issue 8).

For each N of `--guests`, a lab of its own with N guests (tests.fixtures.lab: its own
namespace, subnet, ports and guest names, so a demo lab that is up is not touched; the
real dnsmasq, HTTP server, IPMI BMCs and QEMU under TCG, the cached live image; the
demo's lab settings from inventory/virtual/group_vars), then the real vet run a user
starts: `pytest suites -m stage --profile quick -n N`, every guest netbooted by the run,
then `vet report` as `make demo` runs it, then the lab down. Stages that do not run on
the lab (gpu: no GPU; psu: the lab's BMC keeps no sensors) are skipped as in the demo.

Booting under TCG is CPU-bound (two cores saturate at 2-3 booting guests), so boot and
vetting are reported apart, from the run's own records (each guest's events.jsonl and
the store): per guest power-on, VET-READY, first stage start and stages end (the host's
teardown starting: release or hold); per N the boot wall (first power-on to last
VET-READY), the vetting wall (max over guests of VET-READY to stages end) and its ratio
to N=1, the controller's CPU (getrusage of pytest, its workers and what they ran) and
peak RSS (pytest + workers), where the run's wall time goes, and per stage its wall, the
tool time its commands took on the guest and the rest (the harness's overhead, as
bench_fleet.py). A sampler reads each guest's QEMU CPU time once a second: the share of
a core a guest got in a window (CPU s / wall s) says whether a stage waited on the CPU.
Everything the benchmark made is removed and checked ("cleaned up" on stderr).

    .venv/bin/python benchmarks/bench_scaling.py [--guests 1 2 4] [--memory 768]
    .venv/bin/python benchmarks/bench_scaling.py --from-run reports/runs/RUN  # analysis only

psutil reads the process trees (controller RSS and CPU, QEMU CPU, machine CPU).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import itertools
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.fixtures

from harness.image import build_image  # noqa: E402
from harness.states import STAGES, STATE_STAGES  # noqa: E402
from harness.store import Store  # noqa: E402

Event = dict[str, Any]
AFTER_STRESS = "smart after stress"
#: Events that mean the host's stages are over: its teardown (release, hold) began.
_END_KINDS = frozenset({"released", "kept-up", "hold-opened", "hold-kept", "host-closed",
                        "power-off", "interrupted", "smart-after-stress-end"})
_END_STATES = frozenset({"Failed", "Holding", "Reporting", "Completed"})
#: Commands that run for a set time whatever the CPU they get (stress-ng --timeout,
#: iperf3 -t, a time-based fio); every other command's time grows with contention.
FIXED = re.compile(r"stress-ng .*--timeout \d|iperf3 .* -t \d|--time_based")
DEMO_VARS = ROOT / "inventory" / "virtual" / "group_vars" / "all.yml"


# ------------------------------------------------------------------ the run's records

@dataclass
class StageSpan:
    stage: str
    start: float
    end: float
    tool_s: float  # command-end duration_s of the commands that ended in the span

    @property
    def wall_s(self) -> float:
        return self.end - self.start


@dataclass
class GuestTimes:
    """One guest's milestones (epoch seconds) from its events.jsonl."""

    name: str
    power_on: float | None = None
    ready: float | None = None
    booted: float | None = None
    first_stage: float | None = None
    stages_end: float | None = None
    closed: float | None = None
    stages: list[StageSpan] = field(default_factory=list)
    #: (stage, command, seconds, fixed duration?) of every command run on the host.
    commands: list[tuple[str, str, float, bool]] = field(default_factory=list)


def read_events(path: Path) -> list[Event]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def guest_times(name: str, events: Sequence[Event]) -> GuestTimes:
    """Milestones and stage spans of one host's run from its event log."""
    times = GuestTimes(name)
    booted = next((e for e in events if e["kind"] == "booted"), None)
    ready_step = next((e for e in events if e["kind"] == "boot-step"
                       and e.get("step") == "VET-READY"), None)
    if booted is not None:
        times.booted = float(booted["at"])
        if booted.get("verified_after_ready_s") is not None:  # ms-exact since netboot r2
            times.ready = times.booted - float(booted["verified_after_ready_s"])
            if ready_step is not None:
                times.power_on = times.ready - float(ready_step["seconds"])
        if times.power_on is None:
            times.power_on = times.booted - float(booted["seconds"])
            if ready_step is not None:
                times.ready = times.power_on + float(ready_step["seconds"])
    if times.power_on is None:
        times.power_on = next((float(e["at"]) for e in events if e["kind"] == "power-on"),
                              None)
    started = {e["command_id"]: e for e in events if e["kind"] == "command-start"}
    times.commands = [(str(started[e["command_id"]].get("stage")),
                       str(started[e["command_id"]].get("command", ""))[:100],
                       float(e["duration_s"]),
                       bool(FIXED.search(str(started[e["command_id"]].get("command", "")))))
                      for e in events
                      if e["kind"] == "command-end" and e.get("duration_s") is not None
                      and e.get("command_id") in started]
    marks: list[tuple[float, str]] = []
    for e in events:
        at = float(e["at"])
        if e["kind"] == "state" and e.get("to") in STATE_STAGES:  # State is a StrEnum
            stage = STATE_STAGES[e["to"]]
            if not marks or marks[-1][1] != stage:
                marks.append((at, stage))
        elif e["kind"] == "smart-after-stress" and marks:
            marks.append((at, AFTER_STRESS))
        elif marks and times.stages_end is None and _ends_stages(e):
            times.stages_end = at
        if e["kind"] == "host-closed":
            times.closed = at
    if not marks:
        return times
    times.first_stage = marks[0][0]
    end = times.stages_end if times.stages_end is not None else float(events[-1]["at"])
    bounds = [*marks, (end, "")]
    for (start, stage), (until, _next) in itertools.pairwise(bounds):
        tool = sum(float(e["duration_s"]) for e in events if e["kind"] == "command-end"
                   and e.get("duration_s") is not None and start <= float(e["at"]) < until)
        times.stages.append(StageSpan(stage, start, until, tool))
    return times


def _ends_stages(event: Event) -> bool:
    if event["source"] == "provision":  # the release playbook
        return True
    if event["kind"] == "state":
        return event.get("to") in _END_STATES
    return event["kind"] in _END_KINDS


def run_guests(run_dir: Path) -> dict[str, GuestTimes]:
    return {p.parent.name: guest_times(p.parent.name, read_events(p))
            for p in sorted(run_dir.glob("*/events.jsonl"))}


# ------------------------------------------------------------------ samples

@dataclass
class Sample:
    at: float
    guest_cpu: dict[str, float]  # QEMU process CPU seconds, per guest
    controller_cpu: float  # pytest's tree: live processes plus their reaped children
    controller_rss: int
    machine_busy: float  # all CPUs' non-idle seconds since boot


class Sampler:
    """Once a second: each guest's QEMU CPU time, the controller tree's CPU and RSS, the
    machine's busy CPU time."""

    def __init__(self, qemu_pids: dict[str, int]) -> None:
        self.qemu = {name: psutil.Process(pid) for name, pid in qemu_pids.items()}
        self.samples: list[Sample] = []
        self.peak_rss = 0

    def sample(self, controller: psutil.Process | None) -> None:
        guest_cpu = {}
        for name, proc in self.qemu.items():
            with contextlib.suppress(psutil.Error):
                cpu = proc.cpu_times()
                guest_cpu[name] = cpu.user + cpu.system
        cpu_s, rss = 0.0, 0
        if controller is not None:
            with contextlib.suppress(psutil.Error):
                tree = [controller, *controller.children(recursive=True)]
                for proc in tree:
                    with contextlib.suppress(psutil.Error):
                        t = proc.cpu_times()
                        cpu_s += t.user + t.system + t.children_user + t.children_system
                        rss += proc.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        self.samples.append(Sample(time.time(), guest_cpu, cpu_s, rss, busy))


def between(samples: Sequence[Sample], value: Callable[[Sample], float | None],
            start: float | None, end: float | None) -> float | None:
    """`value` at `end` minus at `start`, linearly interpolated between samples."""
    if start is None or end is None:
        return None
    a, b = _at(samples, value, start), _at(samples, value, end)
    return None if a is None or b is None else b - a


def _at(samples: Sequence[Sample], value: Callable[[Sample], float | None],
        at: float) -> float | None:
    points = [(s.at, v) for s in samples if (v := value(s)) is not None]
    if not points or not points[0][0] - 1.5 <= at <= points[-1][0] + 1.5:
        return None
    i = bisect.bisect_left(points, at, key=lambda p: p[0])
    if i == 0:
        return points[0][1]
    if i == len(points):
        return points[-1][1]
    (t0, v0), (t1, v1) = points[i - 1], points[i]
    return v0 + (v1 - v0) * (at - t0) / (t1 - t0) if t1 > t0 else v1


def guest_cpu(samples: Sequence[Sample], name: str, start: float | None,
              end: float | None) -> float | None:
    """CPU seconds guest `name`'s QEMU used from `start` to `end`."""
    return between(samples, lambda s: s.guest_cpu.get(name), start, end)


def share(samples: Sequence[Sample], name: str, start: float | None,
          end: float | None) -> float | None:
    """The share of one core guest `name`'s QEMU used from `start` to `end`."""
    cpu = guest_cpu(samples, name, start, end)
    if cpu is None or start is None or end is None or end <= start:
        return None
    return cpu / (end - start)


# ------------------------------------------------------------------ one run

@dataclass
class RunResult:
    guests: int
    run_id: str
    times: dict[str, GuestTimes]
    outcomes: dict[str, dict[str, set[str]]]  # host -> stage -> its tests' outcomes
    states: dict[str, str]
    samples: list[Sample] = field(default_factory=list)
    lab_up_s: float | None = None
    pytest_start: float | None = None
    pytest_end: float | None = None
    pytest_rc: int | None = None
    report_s: float | None = None
    lab_down_s: float | None = None
    controller_cpu_s: float | None = None
    peak_rss: int | None = None
    load: tuple[float, float] | None = None


def lab_guests(count: int, memory_mib: int) -> list[dict[str, Any]]:
    """N guests like the demo's (one NVMe, a spec they meet), names no demo uses."""
    from tests.fixtures.lab import guest

    made = []
    for i in range(1, count + 1):
        serial = f"SCALE{i}-NVME0"
        made.append(guest(f"scale{i}", 10 + i, power="ipmi", memory_mib=memory_mib,
                          disks=[{"bus": "nvme", "serial": serial, "size_gib": 1}],
                          spec={"memory": {"total_gib": memory_mib / 1024,
                                           "tolerance_pct": 10},
                                "disks": [{"serial": serial, "size_gb": 1.07}]}))
    return made


def demo_vars() -> dict[str, Any]:
    """The demo lab's group variables (stage overrides, the SSH dead-peer bound)."""
    loaded: dict[str, Any] = yaml.safe_load(DEMO_VARS.read_text())
    return {k: loaded[k] for k in ("vet_stages", "vet_ssh_dead_after_s") if k in loaded}


def add_group_vars(inventory: Path, values: dict[str, Any]) -> None:
    """Add group variables to a lab inventory that the lab fixture wrote."""
    path = inventory / "hosts.yml"
    data = yaml.safe_load(path.read_text())
    data["all"]["vars"].update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def run_once(count: int, memory_mib: int, timeout_s: float,
             keep: Path | None = None) -> RunResult:
    """Lab up, the vet run, vet report, lab down: N guests, everything timed."""
    from tests.fixtures.lab import lab_for

    image = build_image(progress=lambda _m: None)
    variables = demo_vars()
    run_id = f"scaling-{count}-{time.strftime('%H%M%S')}"
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="vet-scaling-") as tmp:
        reports = Path(tmp) / "reports"
        started = time.time()
        lab_cm = lab_for(lab_guests(count, memory_mib), image, variables.get("vet_stages"))
        try:
            with lab_cm as lab:
                lab_up = time.time() - started
                add_group_vars(lab.inventory, {k: v for k, v in variables.items()
                                               if k != "vet_stages"})
                spec = lab.lab.spec
                pids = {g.name: int((spec.guest_dir(g.name) / "qemu.pid").read_text())
                        for g in spec.guests}
                print(f"\n{count} guest(s): lab {spec.netns} up in {lab_up:.1f} s, "
                      f"accelerator {lab.lab.status()['accel']}, load average {load0:.1f}",
                      flush=True)
                result = drive(count, run_id, lab.inventory, reports, lab.env, pids,
                               Path(tmp) / "pytest.log", timeout_s)
                result.lab_up_s = lab_up
                if keep is not None:  # the run's records, for a closer look afterwards
                    shutil.copytree(reports, keep / run_id, dirs_exist_ok=True)
                report_started = time.time()
                report = subprocess.run(
                    [sys.executable, "-m", "harness.cli", "--reports-dir", str(reports),
                     "report", "--run", run_id], cwd=ROOT, env=lab.env, capture_output=True,
                    text=True, timeout=900)
                result.report_s = time.time() - report_started
                if report.returncode != 0:
                    print(f"vet report failed ({report.returncode}): "
                          f"{(report.stdout + report.stderr)[-1500:]}", file=sys.stderr)
                down_started = time.time()
        except AssertionError as exc:  # lab_for's check that nothing was left
            print(f"LEFT BEHIND: {exc}", file=sys.stderr)
            raise SystemExit(1) from exc
        result.lab_down_s = time.time() - down_started
    result.load = (load0, os.getloadavg()[0])
    left = [] if not Path(tmp).exists() else [tmp]
    if left:
        print(f"LEFT BEHIND: {', '.join(left)}", file=sys.stderr)
        raise SystemExit(1)
    print(f"cleaned up: lab {spec.netns} ({count} QEMU guests, dnsmasq, HTTP, BMCs, "
          f"namespace, taps), its state and reports in {tmp}", file=sys.stderr, flush=True)
    return result


def drive(count: int, run_id: str, inventory: Path, reports: Path, env: dict[str, str],
          qemu_pids: dict[str, int], log: Path, timeout_s: float) -> RunResult:
    """The vet run as a user starts it, sampled once a second; its records read back."""
    argv = [sys.executable, "-m", "pytest", "suites", "-m", "stage", "--inventory",
            str(inventory), "--profile", "quick", "-n", str(count), "--run-id", run_id,
            "--reports-dir", str(reports), "-p", "no:cacheprovider", "-rfEs", "-q"]
    sampler = Sampler(qemu_pids)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("wb") as out:
        started = time.time()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env, NO_COLOR="1"))
        controller = psutil.Process(proc.pid)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None:
            sampler.sample(controller)
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=60)
                raise SystemExit(f"the vet run of {count} guest(s) ran past {timeout_s:g} s; "
                                 f"its output:\n{log.read_text(errors='replace')[-4000:]}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1.0)
        ended = time.time()
    sampler.sample(None)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = log.read_text(errors="replace")
    if proc.returncode not in (0, 1):  # 1: a verdict, the run itself worked
        raise SystemExit(f"the vet run failed ({proc.returncode}):\n{text[-4000:]}")
    result = records(count, run_id, reports)
    result.samples = sampler.samples
    result.pytest_start, result.pytest_end, result.pytest_rc = started, ended, proc.returncode
    result.controller_cpu_s = ((after.ru_utime - before.ru_utime)
                               + (after.ru_stime - before.ru_stime))
    result.peak_rss = sampler.peak_rss
    summary = [line for line in text.splitlines() if " passed" in line or " failed" in line]
    print(f"vet run {run_id}: exit {proc.returncode}, {ended - started:.1f} s"
          + (f"; {summary[-1].strip('= ')}" if summary else ""), flush=True)
    return result


def records(count: int, run_id: str, reports: Path) -> RunResult:
    """A run's event logs and its store's test outcomes and final states."""
    outcomes: dict[str, dict[str, set[str]]] = {}
    states: dict[str, str] = {}
    store_path = reports / "vet.sqlite"
    if store_path.exists():
        with Store(store_path) as store:
            for row in store.test_results(run_id):
                outcomes.setdefault(row["host"], {}).setdefault(row["stage"], set()).add(
                    row["outcome"])
            states = {h["name"]: h["state"] for h in store.hosts(run_id)}
    return RunResult(count, run_id, run_guests(reports / "runs" / run_id), outcomes, states)


# ------------------------------------------------------------------ tables

def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _d(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _max(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _min(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def vetting_s(t: GuestTimes) -> float | None:
    return _d(t.ready, t.stages_end)


def guest_table(results: Sequence[RunResult]) -> list[str]:
    lines = ["| guests | guest | power-on | VET-READY | first stage | stages end | boot s | "
             "READY to first stage s | vetting s | guest CPU share: boot / vetting | result |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        zero = r.pytest_start if r.pytest_start is not None else _min(
            [t.power_on for t in r.times.values()])
        for name, t in sorted(r.times.items()):
            rel = [_d(zero, x) for x in (t.power_on, t.ready, t.first_stage, t.stages_end)]
            boot = share(r.samples, name, t.power_on, t.ready)
            vet = share(r.samples, name, t.ready, t.stages_end)
            lines.append(
                f"| {r.guests} | {name} | {' | '.join(_f(x) for x in rel)} | "
                f"{_f(_d(t.power_on, t.ready))} | {_f(_d(t.ready, t.first_stage))} | "
                f"{_f(vetting_s(t))} | {_f(boot, 2)} / {_f(vet, 2)} | "
                f"{r.states.get(name, '?')} |")
    return lines


def summary_table(results: Sequence[RunResult]) -> list[str]:
    base = next((r for r in results if r.guests == 1), results[0] if results else None)
    base_vet = _max([vetting_s(t) for t in base.times.values()]) if base else None
    lines = ["| guests | boot wall s | vetting wall s (per guest) | "
             f"vetting / vetting({base.guests if base else 1}) | controller CPU s | "
             "peak RSS MB (pytest + workers) | machine CPU busy: boot / vetting | "
             "vetting CPU s: guests' QEMU / controller / other | load avg start / end |",
             "|---:|---:|---|---:|---:|---:|---|---|---|"]
    for r in results:
        ts = list(r.times.values())
        first_on, last_ready = _min([t.power_on for t in ts]), _max([t.ready for t in ts])
        vets = [vetting_s(t) for t in ts]
        vet = _max(vets)
        ratio = vet / base_vet if vet is not None and base_vet else None
        v0, v1 = _min([t.ready for t in ts]), _max([t.stages_end for t in ts])
        cores = psutil.cpu_count() or 2
        busy = [_per_core(between(r.samples, lambda s: s.machine_busy, a, b), a, b, cores)
                for a, b in ((first_on, last_ready), (v0, v1))]
        split = cpu_split(r, v0, v1)
        per = ", ".join(_f(v) for v in vets)
        rss = f"{r.peak_rss / 2**20:.0f}" if r.peak_rss is not None else "-"
        load = f"{r.load[0]:.1f} / {r.load[1]:.1f}" if r.load else "-"
        lines.append(f"| {r.guests} | {_f(_d(first_on, last_ready))} | {_f(vet)} ({per}) | "
                     f"{_f(ratio, 2)} | {_f(r.controller_cpu_s)} | {rss} | "
                     f"{_pct(busy[0])} / {_pct(busy[1])} | {split} | {load} |")
    return lines


def _per_core(cpu: float | None, a: float | None, b: float | None,
              cores: int) -> float | None:
    wall = _d(a, b)
    return None if cpu is None or not wall else cpu / (wall * cores)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def cpu_split(r: RunResult, start: float | None, end: float | None) -> str:
    """CPU seconds in a window: the guests' QEMU, the controller tree, everything else."""
    machine = between(r.samples, lambda s: s.machine_busy, start, end)
    guests = sum(guest_cpu(r.samples, n, start, end) or 0.0 for n in r.times)
    controller = between(r.samples, lambda s: s.controller_cpu, start, end)
    if machine is None or controller is None:
        return "-"
    return f"{guests:.0f} / {controller:.0f} / {machine - guests - controller:.0f} CPU s"


def phase_table(results: Sequence[RunResult]) -> list[str]:
    """The run's wall time cut at each milestone reached by the last guest."""
    names = ["lab up", "start-up + provisioning", "boot", "SSH + token", "stages",
             "release + power-off", "pytest finish", "vet report", "lab down", "total"]
    lines = ["| guests | " + " | ".join(names) + " |", "|---:" + "|---:" * len(names) + "|"]
    for r in results:
        ts = list(r.times.values())
        marks = [r.pytest_start, _max([t.power_on for t in ts]), _max([t.ready for t in ts]),
                 _max([t.first_stage for t in ts]), _max([t.stages_end for t in ts]),
                 _max([t.closed for t in ts]), r.pytest_end]
        cells = [r.lab_up_s, *[_d(a, b) for a, b in itertools.pairwise(marks)],
                 r.report_s, r.lab_down_s]
        known = [c for c in cells if c is not None]
        total = sum(known) if len(known) == len(cells) else None
        lines.append(f"| {r.guests} | " + " | ".join(_f(c) for c in [*cells, total]) + " |")
    return lines


def stage_table(results: Sequence[RunResult]) -> list[str]:
    """Per stage and N: wall (mean over guests, max), tool time, the rest, guest CPU."""
    lines = ["| stage | guests | wall s mean (max) | tool s mean | wall - tool s | "
             "guest CPU share | wall / wall(1 guest) | outcomes |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    order = [*STAGES, AFTER_STRESS]  # the comparison runs after the last stage
    base: dict[str, float] = {}
    for stage in order:
        for r in results:
            spans = [(n, s) for n, t in sorted(r.times.items()) for s in t.stages
                     if s.stage == stage]
            outcome = sorted(set().union(*(o.get(stage, set()) for o in r.outcomes.values())))
            if not spans:
                if outcome:
                    lines.append(f"| {stage} | {r.guests} | - | - | - | - | - | "
                                 f"{', '.join(outcome)} |")
                continue
            walls = [s.wall_s for _, s in spans]
            tools = [s.tool_s for _, s in spans]
            shares = [x for n, s in spans if (x := share(r.samples, n, s.start, s.end))
                      is not None]
            mean = statistics.mean(walls)
            if r.guests == 1 or stage not in base:
                base.setdefault(stage, mean)
            lines.append(
                f"| {stage} | {r.guests} | {mean:.1f} ({max(walls):.1f}) | "
                f"{statistics.mean(tools):.1f} | {mean - statistics.mean(tools):.1f} | "
                f"{_f(statistics.mean(shares) if shares else None, 2)} | "
                f"{mean / base[stage]:.2f} | {', '.join(outcome) or '-'} |")
    return lines


def decomposition_table(results: Sequence[RunResult]) -> list[str]:
    """Each guest's VET-READY to stages end, split (means over the guests)."""
    lines = ["| guests | vetting s | fixed-duration commands s | other commands s | "
             "harness between commands s | SSH + token s | guest CPU share |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rows = []
        for name, t in r.times.items():
            vet, ssh = vetting_s(t), _d(t.ready, t.first_stage)
            if vet is None or ssh is None:
                continue
            fixed = sum(c[2] for c in t.commands if c[3])
            other = sum(c[2] for c in t.commands if not c[3])
            rows.append((vet, fixed, other, vet - ssh - fixed - other, ssh,
                         share(r.samples, name, t.ready, t.stages_end)))
        if rows:
            cols = [statistics.mean(v for v in col if v is not None)
                    if any(v is not None for v in col) else None for col in zip(*rows,
                                                                               strict=True)]
            lines.append(f"| {r.guests} | " + " | ".join(
                _f(c, 2 if i == 5 else 1) for i, c in enumerate(cols)) + " |")
    return lines


def print_tables(results: Sequence[RunResult]) -> None:
    for title, rows in (
            ("Per N (boot and vetting apart)", summary_table(results)),
            ("Per guest (seconds from pytest's start)", guest_table(results)),
            ("Where the whole run goes (wall s, cut where the last guest reached each "
             "milestone)", phase_table(results)),
            ("Per stage", stage_table(results)),
            ("Vetting (VET-READY to stages end) per guest, split", decomposition_table(results))):
        print(f"\n{title}\n")
        for line in rows:
            print(line)


# ------------------------------------------------------------------ main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, nargs="+", default=[1, 2, 4],
                        help="lab sizes, one vet run each with -n equal to it")
    parser.add_argument("--memory", type=int, default=768,
                        help="MiB per guest (the demo's; one vCPU each, as the lab fixture)")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="deadline for one vet run, seconds")
    parser.add_argument("--from-run", type=Path, default=None, metavar="RUN_DIR",
                        help="only analyse a finished run's records (reports/runs/RUN): "
                        "no lab, no CPU samples")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="copy each run's reports (store, events, evidence) into "
                        "DIR/RUN_ID before the lab goes down; --from-run DIR/RUN_ID/runs/"
                        "RUN_ID reads them again")
    parser.add_argument("--save", type=Path, default=None, metavar="JSON",
                        help="write every run's milestones, stages, commands and samples here")
    args = parser.parse_args()
    if args.from_run is not None:
        run_dir = args.from_run.resolve()
        result = records(0, run_dir.name, run_dir.parent.parent)
        result.guests = len(result.times)
        print_tables([result])
        return 0
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 2
    print(f"{os.cpu_count()} CPUs; guests {args.guests}, {args.memory} MiB and one vCPU "
          f"each, quick profile, the demo's lab settings ({DEMO_VARS.relative_to(ROOT)})",
          flush=True)
    results = []
    for count in args.guests:
        results.append(run_once(count, args.memory, args.timeout, args.keep))
        print_tables(results[-1:])
        if args.save is not None:  # the figures outlive the run's records (removed)
            args.save.write_text(json.dumps([dataclasses.asdict(r) for r in results],
                                              default=sorted))  # outcome sets
    if len(results) > 1:
        print("\nAll runs")
        print_tables(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
