"""A few status lines kept below a program's own output on a terminal.

pytest's reporter writes as tests finish (often half a line at a time: `test_cpu.py ..`)
while a background thread wants to redraw one line per host. StatusArea sits between the
two: every write of the reporter goes through it, so the status lines are erased first
(ESC[J from the reporter's cursor), the text is written where the reporter expects it, and
the lines are drawn again below, with the cursor put back where the reporter left it.

Why not rich.live: its stdout redirection replaces sys.stdout, which pytest's terminal
writer does not write through (it keeps its own file), and it holds partial lines until
their newline, so pytest's per-test dots would stop appearing as tests finish.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import Any, TextIO

from rich.cells import cell_len, set_cell_size

from harness.event_format import clean

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")


def advance(column: int, text: str) -> int:
    """The cursor's column after `text` is written at `column` (escapes take no room)."""
    plain = _ESCAPES.sub("", text)
    cut = max(plain.rfind("\n"), plain.rfind("\r"))
    if cut >= 0:
        return cell_len(plain[cut + 1:])
    return column + cell_len(plain)


class StatusArea:
    """Status lines under the output written through `write_through`.

    `out` is the terminal (drawn on from any thread); `size` gives its columns and rows.
    Everything is serialised by one lock, so a redraw never lands inside a write.
    """

    def __init__(self, out: TextIO,
                 size: Callable[[], os.terminal_size] | None = None) -> None:
        self._out = out
        self._size = size or (lambda: os.get_terminal_size(out.fileno()))
        self._lock = threading.RLock()
        self._lines: list[str] = []
        self._shown = 0
        self._column = 0
        self._closed = False

    def write_through(self, target: TextIO, text: str) -> None:
        """Write the program's `text` to `target` (the same terminal) around the lines."""
        with self._lock:
            self._erase()
            target.write(text)
            target.flush()
            self._column = advance(self._column, text)
            self._draw()

    def update(self, lines: list[str]) -> None:
        """Show `lines` (one per host) instead of the previous ones."""
        with self._lock:
            if self._closed:
                return
            self._lines = [clean(line) for line in lines]
            self._erase()
            self._draw()

    def close(self) -> None:
        """Erase the lines for good; later writes pass straight through."""
        with self._lock:
            self._erase()
            self._closed = True
            self._lines = []

    def _erase(self) -> None:
        if self._shown:
            self._out.write("\x1b[J")
            self._out.flush()
            self._shown = 0

    def _draw(self) -> None:
        if self._closed or not self._lines:
            return
        columns, rows = self._size()
        lines = self._lines[:max(0, rows - 2)]  # the cursor must be able to come back up
        if not lines:
            return
        width = max(1, columns - 1)  # never the last column: no automatic wrap
        body = "".join("\r\n" + set_cell_size(line, width).rstrip() for line in lines)
        column = self._column % columns if columns else 0
        back = f"\x1b[{len(lines)}A\r" + (f"\x1b[{column}C" if column else "")
        self._out.write(body + back)
        self._out.flush()
        self._shown = len(lines)


class Passthrough:
    """A file for pytest's TerminalWriter: each write goes through a StatusArea."""

    def __init__(self, area: StatusArea, target: TextIO) -> None:
        self._area = area
        self.target = target

    def write(self, text: str) -> int:
        self._area.write_through(self.target, text)
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)
