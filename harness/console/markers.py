"""Command framing over an interactive shell: exit status and output from a byte stream.

A serial console or a persistent SSH shell is one stream of bytes: echo, prompts,
kernel messages, output of earlier commands. To know where one command's output
starts and ends, and its exit status, each command is sent wrapped as

    printf '\\036VET:<id>:B\\036\\n'; ( eval "$(printf %s <base64> | base64 -d)" ) </dev/null;
    printf '\\036VET:<id>:E:%d\\036\\n' "$?"

- The markers contain the ASCII record separator (0x1E). The shell prints it from the
  octal escape `\\036`, while the echo of the typed line shows the four characters
  backslash-0-3-6, so an echoed command can never be taken for its markers.
- `<id>` is fresh for every command, so output of an earlier or interrupted command
  (which carries another id) is never taken for this one's.
- The command travels base64-encoded: no quoting problem whatever it contains.
- It runs in a subshell with stdin from /dev/null: an `exit` in it cannot end the
  session, and it cannot swallow what is typed next.

The reader is incremental and linear in the size of the output: it only searches
the newly arrived bytes (plus a marker's length of overlap) for the marker prefix.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

RS = b"\x1e"
_PREFIX = RS + b"VET:"
_END = re.compile(rb"\x1eVET:([0-9a-f]+):E:(\d+)\x1e")
#: Longest line a tty in canonical mode accepts (N_TTY keeps 4095 chars and a newline).
MAX_TTY_LINE = 4095


def new_command_id() -> str:
    return secrets.token_hex(6)


@dataclass(frozen=True)
class Framed:
    command: str
    command_id: str
    line: str  # what to type, newline included

    @property
    def begin(self) -> bytes:
        return RS + f"VET:{self.command_id}:B".encode() + RS

    @property
    def end_prefix(self) -> bytes:
        return RS + f"VET:{self.command_id}:E:".encode()


def frame(command: str, command_id: str | None = None) -> Framed:
    """Wrap `command` so its output and exit status can be found in a shell's stream."""
    command_id = command_id or new_command_id()
    if not re.fullmatch(r"[0-9a-f]+", command_id):
        raise ValueError(f"command id {command_id!r} must be lower-case hex")
    encoded = base64.b64encode(command.encode()).decode()
    line = (
        f"printf '\\036VET:{command_id}:B\\036\\n'; "
        f"( eval \"$(printf %s {encoded} | base64 -d)\" ) </dev/null; "
        f"printf '\\036VET:{command_id}:E:%d\\036\\n' \"$?\"\n"
    )
    return Framed(command, command_id, line)


class MarkerReader:
    """Finds one framed command's output and exit status in the bytes fed to it.

    Bytes before the begin marker (echo, prompt, stale output) are ignored; bytes
    between the markers are the command's output, handed on line by line.
    """

    def __init__(self, framed: Framed, on_line: Callable[[str], None] | None = None) -> None:
        self.framed = framed
        self.on_line = on_line
        self.started = False
        self._newline_pending = False
        self.exit_status: int | None = None
        self.before = bytearray()  # what came before the begin marker (for diagnostics)
        self._buffer = bytearray()
        self._output = bytearray()
        self._line = bytearray()

    @property
    def done(self) -> bool:
        return self.exit_status is not None

    @property
    def output(self) -> str:
        return _text(bytes(self._output))

    def feed(self, data: bytes) -> bool:
        """Take newly read bytes; True once the end marker (and exit status) was seen."""
        if self.done:
            return True
        self._buffer += data
        if not self.started:
            self._find_begin()
        if self.started:
            self._find_end()
        return self.done

    def _find_begin(self) -> None:
        marker = self.framed.begin
        at = self._buffer.find(marker)
        if at < 0:
            # Keep only what could be the start of a marker still arriving.
            cut = max(0, len(self._buffer) - (len(marker) - 1))
            self._remember_before(self._buffer[:cut])
            del self._buffer[:cut]
            return
        self._remember_before(self._buffer[:at])
        del self._buffer[: at + len(marker)]
        self.started = True
        self._newline_pending = True

    def _drop_marker_newline(self) -> bool:
        """Drop the newline that ends the begin marker; False while it may still arrive."""
        if bytes(self._buffer) in (b"", b"\r"):
            return False
        for newline in (b"\r\n", b"\n"):
            if self._buffer.startswith(newline):
                del self._buffer[: len(newline)]
                break
        self._newline_pending = False
        return True

    def _remember_before(self, data: bytes | bytearray) -> None:
        self.before += data
        del self.before[: max(0, len(self.before) - 4096)]

    def _find_end(self) -> None:
        if self._newline_pending and not self._drop_marker_newline():
            return
        prefix = self.framed.end_prefix
        while True:
            at = self._buffer.find(prefix)
            if at < 0:
                # Everything but a possible partial marker at the tail is output.
                safe = _safe_length(self._buffer)
                self._take(safe)
                return
            match = _END.match(self._buffer, at)
            if match is not None:
                status = int(match.group(2))  # read before _take shifts the buffer
                self._take(at)
                self._flush_line()
                self.exit_status = status
                return
            if len(self._buffer) - at < len(prefix) + 12:
                self._take(at)  # the marker may still be arriving
                return
            self._take(at + 1)  # a garbled or forged marker: it is output

    def _take(self, length: int) -> None:
        self._emit(bytes(self._buffer[:length]))
        del self._buffer[:length]

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        self._output += data
        if self.on_line is None:
            return
        self._line += data
        *lines, tail = self._line.split(b"\n")
        for line in lines:
            self.on_line(_text(line).rstrip("\r"))
        self._line = bytearray(tail)

    def _flush_line(self) -> None:
        if self.on_line is not None and self._line:
            self.on_line(_text(bytes(self._line)).rstrip("\r"))
        self._line = bytearray()


def _safe_length(buffer: bytearray) -> int:
    """How much of the buffer cannot be the start of a marker still arriving."""
    at = buffer.rfind(RS)
    if at < 0 or len(buffer) - at > len(_PREFIX) + 40:
        return len(buffer)
    return at


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


def clean_output(text: str) -> str:
    """Output as a program wrote it: CR LF from a pty turned back into LF."""
    return text.replace("\r\n", "\n")
