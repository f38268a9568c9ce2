"""What the live views print: event lines and severities, the status lines kept under
streaming output (checked on an emulated terminal, pyte), the pytest live lines, and when
those lines are shown at all."""

from __future__ import annotations

import os
import threading

import pyte
import pytest

from harness.event_format import clean, duration, format_line, severity
from harness.live_model import HostView
from harness.live_progress import board_lines, why_not_live
from harness.term_status import Passthrough, StatusArea, advance


def test_event_lines_and_severities() -> None:
    at = 1_700_000_000.25
    line = format_line({"at": at, "source": "ssh", "kind": "command-end", "exit_status": 3,
                        "duration_s": 1.5})
    assert line.endswith("ssh       command-end   exit 3 after 1.5 s")
    assert line[8:12] == ".250"
    assert format_line({"source": "console", "kind": "line", "text": "a\x1b[31mb\rc\x07"}
                       ).endswith("line          abc")
    assert format_line({"source": "harness", "kind": "kept-up", "reason": "failed"}
                       ).endswith("kept-up       reason=failed")
    cases: dict[str, list[dict[str, object]]] = {
        "error": [{"kind": "finding", "severity": "critical"}, {"kind": "command-error"},
                  {"kind": "state", "to": "Failed"}],
        "warning": [{"kind": "finding", "severity": "warning"},
                    {"kind": "command-end", "exit_status": 1},
                    {"kind": "line", "stream": "stderr"}],
        "success": [{"kind": "state", "to": "Completed"}],
        "state": [{"kind": "state", "to": "Booting"}, {"kind": "stage-start"}],
        "progress": [{"kind": "progress"}],
        "info": [{"kind": "line"}, {"kind": "command-end", "exit_status": 0}],
    }
    for wanted, events in cases.items():
        assert [severity(e) for e in events] == [wanted] * len(events)


def test_durations_and_clean() -> None:
    assert [duration(s) for s in (None, 5, 65, 7260)] == ["-", "5s", "1m05s", "2h01m"]
    assert clean("tab\there\nnext\x1b[2Jend") == "tab here nextend"


def test_column_tracking_ignores_escapes() -> None:
    assert advance(0, "abc") == 3
    assert advance(3, "\x1b[32m..\x1b[0m") == 5
    assert advance(5, "done\nnext") == 4
    assert advance(4, "\rcollecting") == 10


class Terminal:
    """A pyte screen behind a file; newline also returns the carriage, as a tty does."""

    def __init__(self, columns: int = 60, rows: int = 8) -> None:
        self.screen = pyte.Screen(columns, rows)
        self.screen.set_mode(pyte.modes.LNM)
        self.stream = pyte.Stream(self.screen)
        self.size = os.terminal_size((columns, rows))

    def write(self, text: str) -> int:
        self.stream.feed(text)
        return len(text)

    def flush(self) -> None:
        pass

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]


def test_status_lines_stay_under_the_output_and_leave_it_intact() -> None:
    term = Terminal()
    area = StatusArea(term, lambda: term.size)  # type: ignore[arg-type]
    reporter = Passthrough(area, term)  # type: ignore[arg-type]
    reporter.write("collected 3 items\n\nsuite/test_cpu.py ")
    area.update(["vet run r1: 0/1 hosts done", "  node01  CPUStress  cpu 10%"])
    assert term.lines()[:5] == ["collected 3 items", "", "suite/test_cpu.py",
                                "vet run r1: 0/1 hosts done", "  node01  CPUStress  cpu 10%"]
    reporter.write("\x1b[32m.\x1b[0m")  # a green dot, mid-line
    reporter.write(".")
    area.update(["vet run r1: 0/1 hosts done", "  node01  CPUStress  cpu 55%"])
    assert term.lines()[2:5] == ["suite/test_cpu.py ..", "vet run r1: 0/1 hosts done",
                                 "  node01  CPUStress  cpu 55%"]
    # Scrolling: many lines of output push everything up; the lines follow underneath.
    for n in range(10):
        reporter.write(f"\nline {n}")
    assert term.lines()[-3:] == ["line 9", "vet run r1: 0/1 hosts done",
                                 "  node01  CPUStress  cpu 55%"]
    reporter.write(" end")
    area.close()
    assert term.lines()[-4:] == ["line 8", "line 9 end", "", ""]
    reporter.write("\nafter")
    assert term.lines()[-4:] == ["line 8", "line 9 end", "after", ""]


def test_status_lines_are_cut_to_the_screen() -> None:
    term = Terminal(columns=20, rows=5)
    area = StatusArea(term, lambda: term.size)  # type: ignore[arg-type]
    area.update([f"host{n} " + "x" * 40 for n in range(6)])
    shown = term.lines()
    assert shown[1:4] == ["host0 " + "x" * 13, "host1 " + "x" * 13, "host2 " + "x" * 13]
    assert term.screen.cursor.y == 0  # back where the output goes on


def test_redraws_from_a_thread_never_split_a_write() -> None:
    term = Terminal(columns=80, rows=30)
    area = StatusArea(term, lambda: term.size)  # type: ignore[arg-type]
    reporter = Passthrough(area, term)  # type: ignore[arg-type]
    done = threading.Event()

    def redraw() -> None:
        n = 0
        while not done.is_set():
            n += 1
            area.update([f"tick {n}"])

    thread = threading.Thread(target=redraw)
    thread.start()
    for n in range(200):
        reporter.write(f"r{n} " if n % 10 else f"\nrow{n // 10}: ")
    done.set()
    thread.join(timeout=10)
    area.close()
    rows = [line for line in term.lines() if line.startswith("row")]
    assert rows[-1] == "row19: " + " ".join(f"r{n}" for n in range(191, 200))


def _view(name: str, state: str, **fields: object) -> HostView:
    view = HostView(name, state=state)
    for key, value in fields.items():
        setattr(view, key, value)
    return view


def test_board_lines() -> None:
    progress = {"kind": "progress", "stage": "cpu", "percent": 42.0, "figure": "2 workers",
                "elapsed_s": 10.0, "remaining_s": 14.0, "at": 100.0}
    views = [
        _view("node01", "CPUStress", stage="cpu", progress=progress, started_at=90.0),
        _view("n2", "Failed", reason="smart: disk S1", started_at=50.0, finished_at=80.0),
        _view("n3", "Registered"),
    ]
    assert board_lines("r1", views, 102.0, 10) == [
        "vet run r1: 1/3 hosts done",
        "  node01  CPUStress      cpu 42% 2 workers (12s, ~12s left)",
        "  n2      Failed         30s  smart: disk S1",
        "  n3      Registered     waiting",
    ]
    cut = board_lines("r1", [*reversed(views)], 102.0, 3)
    assert cut[1].startswith("  node01") and cut[2] == "  ... 2 more hosts"


@pytest.mark.parametrize(("args", "isatty", "env", "why"), [
    ([], True, {"TERM": "xterm"}, None),
    ([], False, {}, "stdout is not a terminal"),
    ([], True, {"CI": "true"}, "CI is set"),
    ([], True, {"TERM": "dumb"}, "TERM=dumb"),
    (["-q"], True, {}, "-q"),
    (["-s"], True, {}, "-s: test output goes straight to the terminal"),
    (["--no-live"], True, {}, "--no-live"),
])
def test_when_the_lines_show(pytester: pytest.Pytester, args: list[str], isatty: bool,
                             env: dict[str, str], why: str | None) -> None:
    config = pytester.parseconfig("-p", "harness.live_progress", *args)
    assert why_not_live(config, isatty, env) == why
