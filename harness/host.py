"""HostUnderTest: what a stage test gets from the `host` fixture.

It runs commands through whatever Channel reaches the host, and turns each one into
events, evidence and an Allure step, so stage code stays an operator's checklist.
"""

from __future__ import annotations

import json
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import allure

from harness.console.boot import Finding
from harness.console.channel import Channel, OutputLine
from harness.console.serial import SerialChannel
from harness.console.watch import ConsoleWatch
from harness.errors import ConsoleDeath, ToolMissing
from harness.events import EventLog, redact
from harness.evidence import Evidence
from harness.models import (
    CommandResult,
    ExpectedSpec,
    Host,
    Measurement,
    Severity,
    SpecDifference,
    to_jsonable,
)
from harness.plots import Panels, plot_of, render
from harness.profiles import Params
from harness.store import Store


@dataclass(frozen=True)
class RunContext:
    """What every host of one run shares."""

    run_id: str
    profile: str
    store: Store
    run_dir: Path  # reports/runs/<run_id>


#: At most one progress event per stage every this many seconds (the first and the
#: final one always go out).
PROGRESS_INTERVAL_S = 10.0
#: Console findings after which the host's OS is gone (nothing left to stop over SSH).
HOST_GONE = frozenset({"panic", "unexpected-reboot"})


class Progress:
    """Throttled progress events of one long step (a stress run, a self-test, a write).

    Events go to the host's event log only (kind `progress`), at most one per
    `interval_s`, so a terminal or `vet status` can show elapsed, remaining and the
    current figure without flooding the log or touching pytest's own output.
    """

    def __init__(self, events: EventLog, stage: str, total_s: float | None,
                 interval_s: float = PROGRESS_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._events = events
        self.stage = stage
        self.total_s = total_s
        self.interval_s = interval_s
        self._clock = clock
        self.started = clock()
        self._last: float | None = None
        self._lock = threading.Lock()
        self.sent = 0

    def update(self, percent: float | None = None, figure: str | None = None, *,
               remaining_s: float | None = None, final: bool = False) -> bool:
        """Emit a progress event unless one went out less than interval_s ago.

        Without `percent`, it follows from the elapsed time and `total_s`; without
        `remaining_s`, from the percent. `final` always emits (100 %). True if emitted.
        """
        now = self._clock()
        with self._lock:
            if not final and self._last is not None and now - self._last < self.interval_s:
                return False
            self._last = now
            self.sent += 1
        elapsed = now - self.started
        if final:
            percent, remaining_s = 100.0, 0.0
        elif percent is None and self.total_s:
            percent = min(99.0, 100.0 * elapsed / self.total_s)
        if remaining_s is None and percent is not None and percent > 0:
            remaining_s = max(0.0, elapsed * (100.0 - percent) / percent)
        self._events.emit("harness", "progress", stage=self.stage,
                          percent=None if percent is None else round(percent, 1),
                          elapsed_s=round(elapsed, 1),
                          remaining_s=None if remaining_s is None else round(remaining_s, 1),
                          figure=figure)
        return True


def host_dir(ctx: RunContext, name: str) -> Path:
    """reports/runs/<run>/<host>: the host's console log, events and evidence."""
    return ctx.run_dir / name


def open_events(ctx: RunContext, name: str) -> EventLog:
    return EventLog(host_dir(ctx, name) / "events.jsonl", ctx.run_id, name)


def log_console(console: SerialChannel, events: EventLog) -> None:
    """Console lines go to the event log, from the reader thread: one "lines" event per
    read (EventLog.emit_lines), stamped with the read's time; per line, the event log
    was what capped a run's console throughput."""

    def log_lines(lines: list[str], at: float, offset: int | None) -> None:
        events.emit_lines("console", lines, at)

    console.subscribe_lines(log_lines)


def subscribe_console(console: SerialChannel, watch: ConsoleWatch, events: EventLog) -> None:
    """Console lines go to the event log and through the watch, from the reader thread.

    Only for a console nobody feeds to the watch yet: netboot() feeds its own, and a line
    fed twice would count each boot step (and each boot-loop round) twice.
    """
    log_console(console, events)
    console.subscribe_lines(watch.feed_lines)


#: Seconds to wait for a plot still drawing when its test ends.
PLOT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class _PendingPlot:
    """A plot being drawn in the background, and where its PNG goes."""

    evidence: Evidence
    number: int  # its place among the stage's evidence files, next to its record
    name: str
    stage: str
    image: Future[bytes]


#: The tools the stages in suites/ require; the first `require` on a host asks for all of
#: them at once. One missing here only costs its own round trip.
STAGE_TOOLS: tuple[str, ...] = (
    "lscpu", "lshw", "dmidecode", "lsblk", "lspci", "smartctl", "stress-ng", "memtester",
    "fio", "wipefs", "ethtool", "iperf3", "ipmitool", "nvidia-smi", "gpu_burn")


class HostUnderTest:
    """A host being vetted: run commands, keep evidence, record measurements."""

    def __init__(
        self, entry: Host, channel: Channel, ctx: RunContext, params: dict[str, Params],
        events: EventLog | None = None,
    ) -> None:
        self.entry = entry
        self.channel = channel
        self.ctx = ctx
        self.all_params = params
        self.host_dir = host_dir(ctx, entry.name)
        self.events = events or open_events(ctx, entry.name)
        #: What earlier stages learnt about this host (e.g. its hardware inventory).
        self.facts: dict[str, Any] = {}
        self.stage = "setup"
        self.evidence = Evidence(self.host_dir / self.stage)
        self.console: SerialChannel | None = None
        self.watch: ConsoleWatch | None = None
        #: The first critical console finding (panic, reboot...), set by the reader thread.
        self.death: Finding | None = None
        #: Seconds between two progress events of a stage (see Progress).
        self.progress_interval_s = PROGRESS_INTERVAL_S
        self._tools_found: set[str] = set()  # see require()
        self._tools_asked: set[str] = set()
        self._plotter: ThreadPoolExecutor | None = None  # see record()
        self._plots: list[_PendingPlot] = []
        #: Draws a plot: here by default; the run's plot server when there is one
        #: (harness.plot_server), so the worker does not carry matplotlib.
        self.renderer: Callable[[str, Panels, str], bytes] = render

    def attach_console(self, console: SerialChannel, watch: ConsoleWatch,
                       subscribed: bool = False) -> None:
        """Watch the host's serial console while stages run over another channel.

        Every console line becomes an event; a critical finding (a death string or an
        unexpected reboot) stops the running command at once and fails the stage.
        `subscribed`: the console already feeds the watch and the event log (it did
        while the host booted).
        """
        self.console = console
        self.watch = watch
        if not subscribed:
            subscribe_console(console, watch, self.events)
        watch.on_finding(self._on_console_finding)

    def _on_console_finding(self, finding: Finding) -> None:
        self.events.emit("console", "finding", finding=finding.kind,
                         severity=finding.severity, message=finding.message)
        if finding.severity is Severity.CRITICAL and self.death is None:
            self.death = finding
            # Imported here: paramiko only in a process that opens SSH (harness.console).
            from harness.console.ssh import SshChannel

            if finding.kind in HOST_GONE and isinstance(self.channel, SshChannel):
                self.channel.cancel(host_gone=True)
            else:
                self.channel.cancel()

    def death_error(self) -> ConsoleDeath | None:
        """The console death as the error that fails the stage, with its evidence."""
        if self.death is None:
            return None
        return ConsoleDeath(f"host {self.name}: {self.death.message} (console, "
                            f"{self.death.kind}; the console lines are attached)")

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def expected(self) -> ExpectedSpec:
        """The spec the operator wrote for this host in the inventory."""
        return self.entry.spec

    @property
    def params(self) -> Params:
        """Effective parameters of the stage now running (profile + inventory)."""
        return self.all_params.get(self.stage, {})

    def enter_stage(self, stage: str) -> None:
        self.stage = stage
        self.evidence = Evidence(self.host_dir / stage)
        self.events.emit("harness", "stage-start", stage=stage)

    def run(
        self, command: str, timeout: float = 60.0, check: bool = False, attach: bool = True
    ) -> CommandResult:
        """Run a command on the host; its output becomes events and evidence.

        With check=True a non-zero exit fails the test with the command's output.
        """
        command_id = uuid.uuid4().hex[:12]
        source = self.channel.transport
        self.events.emit(source, "command-start", command_id, command=command, stage=self.stage)

        def on_line(line: OutputLine) -> None:
            self.events.emit(source, "line", line.command_id, stream=line.stream, text=line.text)

        with allure.step(f"{self.name}$ {command}"):
            dead = self.death_error()
            if dead is not None:
                raise dead
            try:
                result = self.channel.run(command, timeout, on_line, command_id)
            except Exception as exc:
                self.events.emit(source, "command-error", command_id, error=str(exc))
                death = self.death_error()
                if death is not None:
                    raise death from exc
                raise
            self.events.emit(
                source, "command-end", command_id,
                exit_status=result.exit_status, duration_s=round(result.duration_s, 3),
            )
            if attach:
                self.evidence.attach(
                    f"$ {command}",
                    f"$ {command}\n# exit status {result.exit_status}, "
                    f"{result.duration_s:.2f} s\n--- stdout ---\n{result.stdout}"
                    f"--- stderr ---\n{result.stderr}",
                )
        if check and not result.ok:
            raise AssertionError(
                f"host {self.name}: `{command}` exited {result.exit_status}: "
                f"{(result.stderr or result.stdout).strip()[-500:]}"
            )
        return result

    def progress(self, total_s: float | None = None, figure: str | None = None) -> Progress:
        """A throttled progress reporter for a long step of the running stage.

        Call `update(...)` as the step advances (e.g. per self-test poll), or use
        `ticking(...)` around one long blocking command.
        """
        progress = Progress(self.events, self.stage, total_s, self.progress_interval_s)
        progress.update(0.0, figure)
        return progress

    @contextmanager
    def ticking(self, total_s: float | None, figure: str | None = None
                ) -> Iterator[Progress]:
        """Time-based progress events while one long command runs (e.g. stress-ng).

        The command's own output is not progress, but its duration is known (`total_s`;
        None: unknown, no percent), so a background thread emits an update every interval
        until the block ends; it waits on an Event, so it stops as soon as the command
        returns.
        """
        progress = self.progress(total_s, figure)
        done = threading.Event()

        def tick() -> None:
            while not done.wait(progress.interval_s):
                progress.update(figure=figure)

        ticker = threading.Thread(target=tick, name=f"progress-{self.name}", daemon=True)
        ticker.start()
        try:
            yield progress
        finally:
            done.set()
            ticker.join(timeout=5)
        progress.update(figure=figure, final=True)

    def require(self, tool: str, package: str | None = None) -> None:
        """Fail clearly, naming the package to install, when a tool is missing.

        Tools found are remembered for the host, and the first look also asks for every
        tool in STAGE_TOOLS, in the same command: later stages' checks then cost no round
        trip (one took 15-30 ms on an emulated lab guest, and a stage made up to five).
        A tool found missing is asked for again, alone, next time.
        """
        if tool in self._tools_found:
            return
        asking = [tool, *(t for t in STAGE_TOOLS if t != tool and t not in self._tools_asked)]
        names = " ".join(shlex.quote(t) for t in asking)
        found = self.channel.run(
            f'for t in {names}; do command -v "$t" >/dev/null && echo "$t"; done; true',
            timeout=15)
        self._tools_asked.update(asking)
        self._tools_found.update(set(found.stdout.split()) & set(asking))
        if tool not in self._tools_found:
            raise ToolMissing.for_tool(self.name, tool, package)

    def measure(self, name: str, value: float, unit: str) -> None:
        self.ctx.store.add_measurements(
            self.ctx.run_id, self.name, self.stage, [Measurement(name, float(value), unit)]
        )
        self.events.emit("harness", "measurement", name=name, value=value, unit=unit)

    def record(self, name: str, record: Any) -> None:
        """Keep a parsed record: in the store, and attached as JSON (plus a PNG plot when
        it holds series over time, harness.plots).

        The plot is drawn while the test goes on (by `renderer`, from a background
        thread) and attached by finish_plots() at the test's end or in close(): a render
        takes ~0.15 s, which the stage's next commands then hide instead of waiting.
        """
        data = to_jsonable(record)
        text = json.dumps(data)
        clean = redact(text)
        if clean != text:  # e.g. a kernel log holding the command line's run token
            data = json.loads(clean)
        self.ctx.store.add_record(self.ctx.run_id, self.name, self.stage, name, data)
        self.evidence.attach_json(name, data)
        try:
            plot = plot_of(record)
        except Exception as exc:  # a plot is evidence, never a verdict: keep the stage's own
            self._plot_failed(self.stage, name, exc)
            return
        if plot is None:
            return
        if self._plotter is None:
            self._plotter = ThreadPoolExecutor(1, thread_name_prefix=f"plots-{self.name}")
        title = f"{self.name} {self.stage}: {name}"
        image = self._plotter.submit(self.renderer, title, *plot)
        self._plots.append(_PendingPlot(self.evidence, self.evidence.reserve(), name,
                                        self.stage, image))

    def finish_plots(self, timeout: float = PLOT_TIMEOUT_S) -> None:
        """Attach the plots drawn since the last call, waiting for those still drawing
        (in the thread that runs the test: Allure attaches to the running test)."""
        pending, self._plots = self._plots, []
        for plot in pending:
            try:
                image = plot.image.result(timeout=timeout)
            except Exception as exc:  # a timeout too: the plot is left out, said why
                self._plot_failed(plot.stage, plot.name, exc)
                continue
            plot.evidence.attach_png(f"{plot.name} over time", image, plot.number)

    def _plot_failed(self, stage: str, name: str, exc: BaseException) -> None:
        self.events.emit("harness", "plot-failed", stage=stage, record=name,
                         error=f"{type(exc).__name__}: {exc}")

    def record_spec_diff(self, rows: list[SpecDifference]) -> None:
        self.ctx.store.add_spec_diffs(self.ctx.run_id, self.name, rows)

    @contextmanager
    def scratch_path(self, directory: str, name: str) -> Iterator[str]:
        """A path for a scratch file on the host, removed afterwards whatever happens."""
        with self.scratch_paths(directory, name) as (path,):
            yield path

    @contextmanager
    def scratch_paths(self, directory: str, *names: str) -> Iterator[tuple[str, ...]]:
        """Paths for several scratch files, removed afterwards by one command whatever
        happens (a command per file cost ~0.1 s each on an emulated lab guest)."""
        paths = tuple(f"{directory.rstrip('/')}/vet-{self.ctx.run_id}-{name}" for name in names)
        try:
            yield paths
        finally:
            self.channel.run(f"rm -f {' '.join(shlex.quote(p) for p in paths)}", timeout=60)

    def close(self) -> None:
        self.finish_plots()
        if self._plotter is not None:
            self._plotter.shutdown(wait=True)
        self.events.emit("harness", "host-closed")
        self.channel.close()
        if self.console is not None:
            self.console.close()
        self.events.close()
