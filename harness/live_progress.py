"""Live progress in pytest's own terminal: one line per host, updated while stages run.

Only the controller shows it. With xdist the workers write the events, so a background
thread tails the run's event files by offset (woken by inotify, 1 s tick for the clocks);
without xdist the events are this process's own, and each host's EventLog is subscribed
as it opens (harness.events.on_open). The lines sit below pytest's output through
harness.term_status, so the reporter's own lines are never garbled.

Where it shows nothing extra: stdout not a terminal, env CI set, -q, -s (test output would
go straight to the terminal, between the lines), TERM=dumb, --no-live. Nothing rather than
one plain line per state change, because a line printed between pytest's progress dots
splits them, CI logs are read after the fact (`vet logs`, `vet status --json` and the summary
table at the end tell the same story, with times), and such output stays byte-for-byte
what pytest alone prints.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, TextIO

import pytest

from harness.event_format import duration
from harness.event_tail import EventTail, FileChanges
from harness.events import EventLog, on_open
from harness.live_model import HostView, events_path, not_a_line
from harness.term_status import Passthrough, StatusArea

if TYPE_CHECKING:
    from harness.pytest_plugin import VetRun

#: The clocks on the lines move on at least this often.
TICK_S = 1.0
#: At most this many redraws a second, however fast events come (console lines do).
MIN_REDRAW_S = 0.25


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("vet").addoption(
        "--no-live", dest="vet_no_live", action="store_true",
        help="no live per-host progress lines in the terminal (they show only on a tty)")


def why_not_live(config: pytest.Config, isatty: bool, env: Mapping[str, str]) -> str | None:
    """None when the live lines should show, else why not."""
    if config.getoption("vet_no_live", False):
        return "--no-live"
    if not isatty:
        return "stdout is not a terminal"
    if env.get("CI"):
        return "CI is set"
    if env.get("TERM") == "dumb":
        return "TERM=dumb"
    if config.option.verbose < 0:
        return "-q"
    if config.getoption("capture", "fd") == "no":
        return "-s: test output goes straight to the terminal"
    if config.option.collectonly:
        return "--collect-only"
    return None


def host_line(view: HostView, now: float, name_width: int) -> str:
    """`node01  CPUStress      cpu 42% stress-ng (1m10s, ~1m35s left)`"""
    if view.state == "Registered":
        detail = "waiting"
    elif not view.working:
        detail = duration(view.elapsed_s(now)) + (f"  {view.reason}" if view.reason else "")
    else:
        progress = view.progress_text(now)
        detail = f"{view.stage} {progress}" if progress else view.last_event_text()
    return f"  {view.name:<{name_width}}  {view.state:<14} {detail}"


def board_lines(run_id: str, views: list[HostView], now: float, room: int) -> list[str]:
    """A header and one line per host, the working ones first when they do not all fit."""
    done = sum(not v.working and v.state != "Registered" for v in views)
    lines = [f"vet run {run_id}: {done}/{len(views)} hosts done"]
    width = max((len(v.name) for v in views), default=0)
    if len(views) + 1 > room:
        order = {True: 0, False: 1}
        views = sorted(views, key=lambda v: (order[v.working], v.state == "Registered"))
        shown, rest = views[:max(0, room - 2)], views[max(0, room - 2):]
        lines += [host_line(v, now, width) for v in shown]
        lines.append(f"  ... {len(rest)} more hosts")
        return lines
    return lines + [host_line(v, now, width) for v in views]


class LiveProgress:
    """The per-host lines of one pytest controller, from start to session end."""

    def __init__(self, run: VetRun, writer: Any, out: TextIO) -> None:
        self.run = run
        self._writer = writer  # pytest's TerminalWriter; its file is swapped while live
        self._out = out
        self._area = StatusArea(out)
        self.views = {name: HostView(name) for name in run.hosts}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tails: dict[str, EventTail] = {}
        self._changes: FileChanges | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._original: Any = None

    def start(self, tail: bool) -> None:
        """Show the lines; `tail`: read the event files (xdist) instead of subscribing."""
        self._original = self._writer._file
        self._writer._file = Passthrough(self._area, self._original)
        if tail:
            self._tails = {name: EventTail(events_path(self.run.run_dir, name))
                           for name in self.views}
            self._changes = FileChanges(self._wake)
        else:
            self._unsubscribe = on_open(self._opened)
        self._thread = threading.Thread(target=self._loop, name="vet-live", daemon=True)
        self._thread.start()

    def _opened(self, log: EventLog) -> None:
        if log.run_id == self.run.run_id and log.host in self.views:
            log.subscribe(self._feed)

    def _feed(self, event: dict[str, Any]) -> None:
        with self._lock:
            view = self.views.get(str(event.get("host")))
            if view is not None:
                view.apply(event)
        self._wake.set()

    def _read_tails(self) -> None:
        if self._changes is not None:
            self._changes.watch(self.run.run_dir, recursive=True)
        for name, tail in self._tails.items():
            events = tail.read(want=not_a_line, keep_latest=True)
            with self._lock:
                for event in events:
                    self.views[name].apply(event)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._read_tails()
            try:
                rows = os.get_terminal_size(self._out.fileno()).lines
            except OSError:
                rows = 24
            with self._lock:
                lines = board_lines(self.run.run_id, list(self.views.values()), time.time(),
                                    rows - 2)
            self._area.update(lines)
            self._wake.wait(TICK_S)
            self._wake.clear()
            self._stop.wait(MIN_REDRAW_S)

    def stop(self) -> None:
        """Erase the lines and give pytest its terminal back (idempotent)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._area.close()
        if self._original is not None:
            self._writer._file = self._original
            self._original = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._changes is not None:
            self._changes.close()
            self._changes = None
        for tail in self._tails.values():
            tail.close()
        self._tails = {}
        if not self._out.closed:
            self._out.close()


LIVE_KEY = pytest.StashKey[LiveProgress]()


def _run(config: pytest.Config) -> VetRun | None:
    from harness.pytest_plugin import RUN_KEY

    return config.stash.get(RUN_KEY, None)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    run = _run(config)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if run is None or run.is_worker or reporter is None:
        return
    try:
        isatty = sys.stdout.isatty()
    except ValueError:  # a closed stdout
        isatty = False
    if why_not_live(config, isatty, os.environ) is not None:
        return
    # A second handle on the terminal: during a test pytest points fd 1 at its capture
    # file, and the lines must still reach the screen.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding=sys.stdout.encoding,
                    errors="replace")
    config.stash[LIVE_KEY] = LiveProgress(run, config.get_terminal_writer(), out)


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """Start around whichever loop runs the tests (pytest's own, or xdist's DSession)."""
    live = session.config.stash.get(LIVE_KEY, None)
    if live is not None:
        live.start(tail=session.config.pluginmanager.has_plugin("dsession"))
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    live = session.config.stash.get(LIVE_KEY, None)
    if live is not None:
        live.stop()


def pytest_unconfigure(config: pytest.Config) -> None:
    live = config.stash.get(LIVE_KEY, None)
    if live is not None:
        live.stop()


__all__ = ["LIVE_KEY", "LiveProgress", "board_lines", "host_line", "why_not_live"]
