"""`vet status [--watch] [--json]` and `vet logs HOST [-f]`: a run seen live from a terminal.

Both read only the run store and the per-host event files, so they work from another
terminal while pytest runs, and after it ended. Following waits on file changes
(inotify) with a 1 s tick for the clocks, and ends by itself when the run is finished.
On a terminal the output is a rich table / coloured lines; otherwise plain text.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich import box
from rich.color import ColorSystem
from rich.console import Console
from rich.live import Live
from rich.style import Style
from rich.table import Table
from rich.text import Text

from harness.cli import _run_id, _store
from harness.errors import VetError
from harness.event_format import clean, clock, duration, format_lines, severity
from harness.event_tail import EventTail, FileChanges, raw_field
from harness.live_model import HostView, RunView, StoreChanges, events_path
from harness.store import Store

#: How often a watching view refreshes its clocks when nothing was written.
TICK_S = 1.0

#: Line width of plain output (a pipe, a file): wide enough that a row stays one line.
PLAIN_WIDTH = 240

#: Event sources a host's stream has (the transports, and who else speaks in it).
SOURCES = ("console", "ssh", "local", "harness", "power", "provision", "controller")

STYLES = {"error": "bold red", "warning": "yellow", "success": "green", "state": "bold cyan",
          "info": "", "progress": "blue", "debug": "dim"}


def _console() -> Console:
    """Colours and cursor movement on a terminal; plain, wide text into a pipe or file."""
    console = Console(highlight=False, markup=False)
    if not console.is_terminal:  # no wrapping at an imagined 80 columns: one row, one line
        console = Console(highlight=False, markup=False, width=PLAIN_WIDTH)
    return console


def _run_dir(args: argparse.Namespace, run_id: str) -> Path:
    return Path(args.reports_dir) / "runs" / run_id


# --- vet status -----------------------------------------------------------------------------


def _state_style(view: HostView) -> str:
    if view.state in ("Failed", "Holding"):
        return "bold red"
    if view.state == "Completed":
        return "green"
    return "cyan" if view.working else "dim"


def render_table(view: RunView, now: float, terminal: bool) -> Table:
    """The status table: one row per host."""
    run = view.run
    title = (f"run {view.run_id}  {run.get('status', '?')}  profile {run.get('profile', '?')}"
             f"  started {clock(run.get('started_at'))[:8]}")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD if terminal else None,
                  pad_edge=False, show_edge=False)
    for name in ("host", "state", "stage", "progress", "elapsed", "last event", "verdict"):
        table.add_column(name, no_wrap=True, overflow="ellipsis",
                         max_width=60 if name == "last event" else None)
    for _, host in sorted(view.hosts.items()):
        table.add_row(
            host.name, Text(host.state, style=_state_style(host)), host.stage or "-",
            host.progress_text(now) or "-", duration(host.elapsed_s(now)),
            host.last_event_text() or "-",
            Text(host.verdict, style="red" if host.verdict.startswith("FAILED") else ""),
        )
    return table


def cmd_status(args: argparse.Namespace) -> int:
    with _store(args) as store:
        run_id = _run_id(store, args.run)
        view = RunView(store, run_id, _run_dir(args, run_id))
        try:
            view.refresh()
            if args.json:
                document = view.to_json()
                document["holds"] = [
                    {key: hold[key] for key in ("host", "stage", "reason", "opened_at",
                                                "expires_at", "ssh_command")}
                    for hold in store.open_holds() if hold["run_id"] == run_id]
                print(json.dumps(document, indent=2))
                return 0
            console = _console()
            if not args.watch:
                console.print(render_table(view, time.time(), console.is_terminal))
            elif console.is_terminal:
                _watch_live(view, console, args)
            else:
                _watch_plain(view, console, args)
            _print_holds(console, store, run_id)
        finally:
            view.close()
    return 0


def _print_holds(console: Console, store: Store, run_id: str) -> None:
    """Held hosts of the run and how to reach them (harness.hold)."""
    from harness.hold import hold_lines

    for line in hold_lines(store, run_id):
        console.print(line, soft_wrap=True)


@contextlib.contextmanager
def _ctrl_c_ends_the_watch(wake: threading.Event) -> Iterator[threading.Event]:
    """Ctrl-C sets the returned event and wakes the watch's wait; once the block is left
    (the terminal restored), KeyboardInterrupt goes on to the CLI (exit status 130).

    Why not let KeyboardInterrupt fly: raised wherever the main thread happens to be, it
    can land inside rich's or watchdog's code; and Python installs no handler at all when
    SIGINT was ignored at its start (a background job of a shell without job control),
    so a watch started that way ignored Ctrl-C. The handler is installed before the first
    table is out; a flag checked once per turn of the loop cannot be lost.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers belong to the main thread: Ctrl-C as usual there
        return

    def on_ctrl_c(signum: int, frame: object) -> None:
        stop.set()
        wake.set()

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
    if stop.is_set():
        raise KeyboardInterrupt


def _watch_live(view: RunView, console: Console, args: argparse.Namespace) -> None:
    """A table redrawn in place until the run finishes (or Ctrl-C)."""
    with FileChanges() as changes, _ctrl_c_ends_the_watch(changes.wake) as stop, \
            Live(console=console, auto_refresh=False) as live:
        while True:
            _watch_folders(changes, args, view.run_id)
            view.refresh()
            live.update(render_table(view, time.time(), True), refresh=True)
            if view.finished or stop.is_set():
                break
            changes.wait(TICK_S)
    console.print(f"run {view.run_id} finished: {view.run.get('status')}")


def _watch_plain(view: RunView, console: Console, args: argparse.Namespace) -> None:
    """Into a pipe: the table, then each state change as the store recorded it (time,
    host, from, to, reason), then the final table."""
    with FileChanges() as changes, _ctrl_c_ends_the_watch(changes.wake) as stop:
        # The baseline first, then the table: a change recorded in between is printed as
        # a line (the table may show it too), never lost between the two (CI saw that).
        seen = _new_transitions(view, None, console, show=False)
        view.refresh()
        console.print(render_table(view, time.time(), False))
        while not view.finished and not stop.is_set():
            changes.wait(TICK_S)
            if stop.is_set():
                break
            _watch_folders(changes, args, view.run_id)
            view.refresh()
            seen = _new_transitions(view, seen, console, show=True)
    console.print(render_table(view, time.time(), False))
    console.print(f"run {view.run_id} finished: {view.run.get('status')}")


def _new_transitions(view: RunView, after: int | None, console: Console, show: bool) -> int:
    """Print the run's transitions after id `after`; the last id seen."""
    rows = view.store.query("SELECT * FROM transitions WHERE run_id = ? AND id > ? ORDER BY id",
                            (view.run_id, after or 0))
    for row in rows if show else ():
        reason = f": {row['reason']}" if row["reason"] else ""
        console.print(clean(f"{clock(row['at'])} {row['host']} {row['from_state']} -> "
                            f"{row['to_state']}{reason}"), soft_wrap=True)
    return int(rows[-1]["id"]) if rows else (after or 0)


def _watch_folders(changes: FileChanges, args: argparse.Namespace, run_id: str) -> None:
    """The store's folder (a commit writes its WAL) and the run's folder, once they exist."""
    store_path = Path(args.store) if args.store else Path(args.reports_dir) / "vet.sqlite"
    changes.watch(store_path.parent)
    changes.watch(_run_dir(args, run_id), recursive=True)


# --- vet logs -------------------------------------------------------------------------------


def _host_known(store: Store, run_id: str, host: str) -> None:
    names = [h["name"] for h in store.hosts(run_id)]
    if host not in names:
        listed = ", ".join(names) if names else "none yet"
        raise VetError(f"host {host!r} is not in run {run_id}; its hosts: {listed} "
                       "(pass one of them, or --run for another run)")


class LineWriter:
    """Event lines to the console: coloured by severity on a terminal, plain otherwise.

    Written straight to the console's file rather than one `console.print` per line: a
    burn-in's log has 10^5-10^6 lines, and rich renders each call (about 1 ms here).
    """

    def __init__(self, console: Console, sources: set[str] | None) -> None:
        self._file = console.file
        self._sources = sources
        self._styles: dict[str, tuple[str, str]] = {}
        if console.color_system is not None:
            for name, style in STYLES.items():
                if style:
                    start, end = Style.parse(style).render(
                        "\0", color_system=ColorSystem.STANDARD).split("\0")
                    self._styles[name] = (start, end)

    def want(self) -> Callable[[bytes], bool] | None:
        """Skip parsing the lines of other sources (most of a file is console lines)."""
        sources = self._sources
        if sources is None:
            return None
        return lambda raw: raw_field(raw, "source") in sources

    def write(self, events: list[dict[str, Any]]) -> None:
        out: list[str] = []
        for event in events:
            if self._sources is not None and event.get("source") not in self._sources:
                continue
            start, end = self._styles.get(severity(event), ("", ""))
            # A console read's batch prints as its lines, as per-line events always did.
            out.extend(f"{start}{line}{end}\n" for line in format_lines(event))
        if out:
            self._file.write("".join(out))
            self._file.flush()


def cmd_logs(args: argparse.Namespace) -> int:
    sources = set(args.source) if args.source else None
    console = _console()
    with _store(args) as store:
        run_id = _run_id(store, args.run)
        _host_known(store, run_id, args.host)
        path = events_path(_run_dir(args, run_id), args.host)
        tail = EventTail(path)
        lines = LineWriter(console, sources)
        try:
            lines.write(tail.read(lines.want()))
            if args.follow:
                _follow(store, run_id, tail, console, lines, args)
            elif not path.exists():
                console.print(f"(host {args.host} has no events yet in run {run_id}: {path})")
        finally:
            tail.close()
    return 0


def _follow(store: Store, run_id: str, tail: EventTail, console: Console,
            lines: LineWriter, args: argparse.Namespace) -> None:
    """Print what is appended until the run is finished (then one last read) or Ctrl-C."""
    changes_in_store = StoreChanges(store)
    with FileChanges() as changes:
        while True:
            _watch_folders(changes, args, run_id)
            changes.watch(tail.path.parent)
            status = "running"
            if changes_in_store.changed():
                status = (store.run(run_id) or {}).get("status", "gone")
            lines.write(tail.read(lines.want()))
            if status != "running":
                console.print(clean(f"(run {run_id} finished: {status})"), style="dim")
                return
            changes.wait(TICK_S)


# --- registration ---------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser(
        "status", help="where each host of a run is: state, stage, progress, last event, "
                       "verdict so far (docs/LIVE-VIEW.md)")
    status.add_argument("--run", help="run id (default: the latest run)")
    status.add_argument("--watch", action="store_true",
                        help="keep refreshing until the run finishes (Ctrl-C leaves)")
    status.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    status.set_defaults(func=cmd_status)

    logs = sub.add_parser("logs", help="a host's event stream of a run, annotated and coloured")
    logs.add_argument("host", help="host name as in the inventory")
    logs.add_argument("--run", help="run id (default: the latest run)")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new events until the run finishes (Ctrl-C leaves)")
    logs.add_argument("--source", action="append", choices=SOURCES,
                      help="only events from this source (repeatable)")
    logs.set_defaults(func=cmd_logs)


__all__ = ["cmd_logs", "cmd_status", "register", "render_table"]
