"""SerialChannel: commands over a serial console (QEMU's TCP serial, ser2net, RFC 2217, a tty).

One reader thread owns the port and reads all the time, whether or not anybody waits
for output: everything the console prints goes to the host's console log with a
timestamp, to line subscribers (boot tracker, console watch) and to whoever is
waiting right now (a `run()`, or a pexpect `console()` session such as the login).

Open the channel BEFORE powering the host on. What a host prints while nobody is
connected is gone (QEMU's `server=on,wait=off` socket, ser2net drop it), and pyserial's
socket:// `open()` would throw away whatever is already arriving (its input purge loops
for as long as data keeps coming: vet skips that purge). So: `open()` first, then
power on, then `login()` once the host is up.

`login()` answers "login:" and "Password:" (user and password given by the caller, from
the inventory / vault), then sets the shell up so that framing cannot be confused:
readline off (`set +o emacs`: no bracketed paste, which bash 5.2 wraps prompts in, and
no line editing; `bind` turns bracketed paste off first anyway), `stty -echo`, a unique
PS1, empty PS2 and PS0, TERM=dumb, job control on (so a command's whole process group
can be stopped), a huge IGNOREEOF (a stray ^D cannot log out) and `dmesg -n 1` (only
emergencies such as a panic still print on the console).

Commands use the marker protocol (harness.console.markers): each gets a fresh id, so
echo, prompts, kernel messages and the output of an earlier or interrupted command
are never taken for its output. A console is one stream, so stderr arrives inside
stdout in the order it was written (`separates_stderr = False`).

A console that disconnects (the TCP endpoint closes) fails the running command with a
ChannelError naming the host and command: what it printed meanwhile is lost, so its
result cannot be trusted. By default nothing reconnects behind the caller's back;
`open()` and `login()` again reconnect explicitly. With `reconnect_s` (a console watched
while stages run over SSH, or a flaky ser2net), the reader itself opens the console
again, with exponential backoff, for up to that long, and notes the gap in the log;
state subscribers hear "lost", then "back" or "gone". Either way a command cut off by
the drop is stopped (^C) before the next one runs, so nothing is left behind on the host
that vet can still reach.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import secrets
import select
import shlex
import socket
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pexpect
import pexpect.expect
import pexpect.spawnbase
import serial
import tenacity

from harness.console.boot import LineBlock
from harness.console.channel import (
    ChannelError,
    CommandCancelled,
    CommandTimeout,
    LineHandler,
    OutputLine,
)
from harness.console.markers import (
    MAX_TTY_LINE,
    Framed,
    MarkerReader,
    clean_output,
    new_command_id,
)
from harness.console.share import ConsoleShare
from harness.models import CommandResult

log = logging.getLogger(__name__)

DEFAULT_BAUD = 115200
#: pexpect settings that keep expect linear in the output size (DESIGN: the default
#: search window makes a regex quadratic, the default delayafterread caps ~7 MB/s).
MAXREAD = 1 << 20
SEARCH_WINDOW = 2 * MAXREAD
#: A line left unfinished this long (a prompt) is logged and handed to subscribers as is.
PARTIAL_LINE_S = 0.25
#: Longest unfinished line kept in memory before it is logged in pieces.
MAX_PARTIAL = 64 * 1024
#: Most bytes a waiter may leave unread before the oldest are dropped (the log keeps them).
MAX_PENDING = 64 << 20
#: How much of the latest output a new console session sees (a prompt already shown).
RECENT = 4096

LineSubscriber = Callable[[str, float], None]
#: (state: "lost", "back" or "gone", what happened), from the reader thread.
StateSubscriber = Callable[[str, str], object]
#: Backoff between attempts to open a console that went away: 0.25 s doubling to 4 s.
_RECONNECT_WAIT = tenacity.wait_exponential(multiplier=0.25, min=0.25, max=4.0)
#: (lines that arrived in one read, when, the console log's size after them)
LinesSubscriber = Callable[[list[str], float, int | None], object]

# Prompts at the end of what has arrived (\Z): "Last login: ..." in a banner is no prompt.
LOGIN_PROMPT = re.compile(rb"login: ?\Z")
PASSWORD_PROMPT = re.compile(rb"[Pp]assword: ?\Z")
LOGIN_INCORRECT = re.compile(rb"Login incorrect|Permission denied|Authentication failure")
SHELL_PROMPT = re.compile(rb"[$#] \Z")

# Interrupted (^C), a command's whole process group goes, background jobs included:
# in a subshell they ignore SIGINT, having no job control.
_KILL_GROUP_ON_INT = "trap 'trap - INT TERM; kill -TERM 0 2>/dev/null' INT TERM"
_PLAIN = re.compile(r"[\x20-\x7e]*")


def frame_for_console(command: str, command_id: str | None = None) -> Framed:
    """The marker protocol's framing (markers.frame), tuned for a console.

    A plain command (printable ASCII: nothing a tty would take as a key) travels
    single-quoted, which saves the base64 decode (a pipeline and an exec: ~3 ms a
    command); anything else travels base64-encoded as markers.frame sends it.
    """
    command_id = command_id or new_command_id()
    if not re.fullmatch(r"[0-9a-f]+", command_id):
        raise ValueError(f"command id {command_id!r} must be lower-case hex")
    if _PLAIN.fullmatch(command):
        body = "eval " + shlex.quote(command)
    else:
        encoded = base64.b64encode(command.encode()).decode()
        body = f'eval "$(printf %s {encoded} | base64 -d)"'
    line = (
        f"printf '\\036VET:{command_id}:B\\036\\n'; "
        f"( {_KILL_GROUP_ON_INT}; {body} ) </dev/null; "
        f"printf '\\036VET:{command_id}:E:%d\\036\\n' \"$?\"\n"
    )
    return Framed(command, command_id, line)


def open_serial(url: str) -> Any:
    """The pyserial object for any console URL vet accepts, opened.

    socket://host:port and rfc2217://host:port go to pyserial as they are; a device
    path (/dev/ttyS0, /dev/ttyUSB0) opens at 115200 baud; the inventory form
    serial:///dev/ttyS1?baud=57600 becomes that device path at that baud rate.
    """
    if url.startswith("serial://"):
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        baud = int(query.get("baud", [str(DEFAULT_BAUD)])[0])
        if not parts.path:
            raise ValueError(f"serial URL {url!r} names no device (serial:///dev/ttyS0)")
        return serial.serial_for_url(parts.path, baudrate=baud)
    if url.startswith("/"):
        return serial.serial_for_url(url, baudrate=DEFAULT_BAUD)
    port = serial.serial_for_url(url, do_not_open=True)
    if url.startswith("socket://"):
        # pyserial's purge reads until the line is quiet: a chatty console would keep
        # open() spinning, and what it reads is lost. Keep it all instead.
        port.reset_input_buffer = lambda: None
        port.open()
        del port.reset_input_buffer
        _no_delay(port)
    else:
        port.open()
    return port


def _no_delay(port: Any) -> None:
    """TCP_NODELAY on a socket:// console, as telnet and ssh set it: what is typed goes
    out at once. Under Nagle a write waits while an earlier one is unacknowledged, and a
    console that has nothing to answer acknowledges late (delayed ACK, up to 40 ms):
    ^C followed by a sync line, keys typed one by one."""
    fd = _fileno(port)
    if fd is not None:
        with socket.socket(fileno=os.dup(fd)) as sock:  # the dup closes, not the port
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _timestamp(at: float) -> bytes:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()


_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F])
_CONTROL = re.compile(b"[" + re.escape(_CONTROL_BYTES) + b"]")
_NOT_CONTROL = bytes(sorted(set(range(256)) - set(_CONTROL_BYTES)))


def _escape(data: bytes) -> bytes:
    """Control characters as \\xNN, so the log stays a readable text file."""
    if not data.translate(None, _NOT_CONTROL):  # none there (8x faster than re.search)
        return data
    return _CONTROL.sub(lambda m: b"\\x%02x" % m[0][0], data)


class ConsoleLines:
    """Splits the console stream into timestamped lines for the log and subscribers.

    Log format, one entry a line: `<UTC time> | <line>` for a complete line,
    `<UTC time> ~ <piece>` for a line that stayed unfinished (a prompt, a line longer
    than MAX_PARTIAL) and continues in the next entry, `<UTC time> ! <note>` for vet's
    own notes (opened, disconnected). Line ends lose their CR (a read whose CRs are as
    many as its line ends is taken as CR LF lines); other control characters are written
    as \\xNN; a secret (the login password, should the console echo it) as ********.
    Memory: one unfinished line of at most MAX_PARTIAL bytes, whatever runs for hours.
    """

    def __init__(self, path: Path | None, secrets: tuple[str, ...] = ()) -> None:
        self._secrets = [s.encode() for s in secrets if s]
        self._file: BinaryIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: each read goes out in one writev (the log is current the moment
            # a waiter hears of it), without a copy through a buffer.
            self._file = path.open("ab", buffering=0)
        self._partial = b""
        self._subscribers: list[LineSubscriber] = []
        self._batch_subscribers: list[LinesSubscriber] = []
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        return bool(self._partial)

    def subscribe(self, callback: LineSubscriber) -> Callable[[], None]:
        return self._add(self._subscribers, callback)

    def subscribe_lines(self, callback: LinesSubscriber) -> Callable[[], None]:
        return self._add(self._batch_subscribers, callback)

    def _add(self, subscribers: list[Any], callback: Any) -> Callable[[], None]:
        with self._lock:
            subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                subscribers.remove(callback)

        return unsubscribe

    def feed(self, data: bytes, at: float) -> None:
        end = data.rfind(b"\n")
        if end < 0:
            self._partial += data
            if len(self._partial) > MAX_PARTIAL:
                self.flush_partial(at)
            return
        # One copy of the completed lines, the unfinished one before them joined in.
        body = (b"".join((self._partial, memoryview(data)[:end])) if self._partial
                else data[:end])
        self._partial = data[end + 1:]
        self._emit(b" | ", body, at)

    def flush_partial(self, at: float) -> None:
        """Write out an unfinished line (a prompt waiting for input, a torn stream)."""
        if self._partial:
            piece, self._partial = self._partial, b""
            pieces = [piece[i:i + MAX_PARTIAL] for i in range(0, len(piece), MAX_PARTIAL)]
            self._emit(b" ~ ", b"\n".join(pieces), at)

    def note(self, text: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        self._write(_timestamp(at) + b" ! " + _escape(text.encode()) + b"\n")

    def _emit(self, sep: bytes, body: bytes, at: float) -> None:
        """Log lines joined by LF, CRs as received: whole-buffer operations, no per-line
        Python (this runs for every read, at up to ~100 MB/s). The usual read (CR LF
        lines, nothing else unprintable) costs one translate (which control characters
        it holds), one replace to drop the CRs and one to put the timestamps in; the
        lines its subscribers get are that CR-less text split once (a LineBlock: the
        text and that it is plain come with it, so the watch need not find them again).
        """
        for secret in self._secrets:
            body = body.replace(secret, b"********")
        prefix = _timestamp(at) + sep
        controls = body.translate(None, _NOT_CONTROL)
        plain = not controls  # no control character (to check: ASCII)
        if plain:
            out = body.replace(b"\n", b"\n" + prefix)
        else:
            stripped = body.replace(b"\r", b"")
            out = stripped.replace(b"\n", b"\n" + prefix)
            line_ends = (len(out) - len(stripped)) // len(prefix) + body.endswith(b"\r")
            plain = len(body) - len(stripped) == len(controls) == line_ends
            if plain:  # every CR ends a line (CR LF): the usual case
                body = stripped
            else:
                body = body.replace(b"\r\n", b"\n").removesuffix(b"\r")
                out = _escape(body).replace(b"\n", b"\n" + prefix)
        self._write(prefix, out, b"\n")
        with self._lock:
            subscribers = list(self._subscribers)
            batch_subscribers = list(self._batch_subscribers)
        if not subscribers and not batch_subscribers:
            return
        text = body.decode("utf-8", errors="replace")
        lines = LineBlock(text.split("\n"), text, plain and text.isascii())
        offset = None if self._file is None else self._file.tell()
        for batch_callback in batch_subscribers:
            try:
                batch_callback(lines, at, offset)
            except Exception:
                log.exception("console lines subscriber %r failed", batch_callback)
        for callback in subscribers:
            for line in lines:
                try:
                    callback(line, at)
                except Exception:
                    log.exception("console line subscriber %r failed", callback)

    def _write(self, *parts: bytes) -> None:
        """One system call, no copy (the file is unbuffered); the rest, should a signal or
        a full disk cut the write short."""
        if self._file is not None and not self._file.closed:
            fd = self._file.fileno()
            written = os.writev(fd, parts)
            if written < sum(map(len, parts)):
                rest = memoryview(b"".join(parts))[written:]
                while rest:
                    rest = rest[os.write(fd, rest):]

    def close(self) -> None:
        self.flush_partial(time.time())
        if self._file is not None:
            self._file.close()


class _Tap:
    """Bytes the reader thread hands to one waiter (a run() or a console session)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self.dropped = 0
        self.closed: str | None = None  # why no more data will come
        self._woken = False

    def put(self, data: bytes) -> None:
        with self._cond:
            self._chunks.append(data)
            self._size += len(data)
            while self._size > MAX_PENDING and len(self._chunks) > 1:
                old = self._chunks.popleft()
                self._size -= len(old)
                self.dropped += len(old)
            self._cond.notify_all()

    def close(self, reason: str) -> None:
        with self._cond:
            self.closed = reason
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def take(self, limit: int, timeout: float | None) -> bytes:
        """Up to `limit` bytes; b"" at the timeout, when woken, or when closed and drained."""
        with self._cond:
            if not self._chunks and self.closed is None and not self._woken:
                self._cond.wait(timeout)
            self._woken = False
            if not self._chunks:
                return b""
            parts = [self._chunks.popleft()]
            length = len(parts[0])
            while self._chunks and length < limit:
                parts.append(self._chunks.popleft())
                length += len(parts[-1])
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            if len(data) > limit:
                self._chunks.appendleft(data[limit:])
                data = data[:limit]
            self._size -= len(data)
            return data


class _LazyBeforeExpecter(pexpect.expect.Expecter):  # type: ignore[misc]
    """pexpect's Expecter for `expect_exact` without a search window, minus its copies.

    pexpect copies every read into `_before` (a BytesIO) and, at the match, copies all
    of it once more to cut the match off: two passes over fresh memory for a 50 MB wait
    (the kernel faults in each page: ~2.5 ns per byte here, half the bare session's cost).
    This one keeps the reads as they came (the same bytes objects, no copy), searches a
    pattern's length of the older output plus each new read as pexpect does (with
    pexpect's own searcher, so the same match), and leaves `before` to be joined when
    somebody reads it (ConsoleSpawn.before). The state after a match, a timeout or EOF is
    what pexpect leaves, so pexpect's own expect() can go on from it.
    """

    def __init__(self, spawn: ConsoleSpawn, searcher: Any) -> None:
        super().__init__(spawn, searcher, None)
        self.parts: list[bytes] = []  # everything since the last match, as read
        self.kept = 0  # len(parts[1:]) summed, to drop old parts (keep_before=False)
        self.tail = b""  # the last `lookback` bytes of it (a match may start there)

    def existing_data(self) -> int | None:
        data: bytes = self.spawn._before.getvalue()  # == _buffer (ConsoleSpawn checked)
        self.spawn._before = self.spawn.buffer_type()
        self.spawn._buffer = self.spawn.buffer_type()
        self.parts, self.kept = ([data] if data else []), 0
        return self.search(data, len(data))

    def new_data(self, data: bytes) -> int | None:
        self.parts.append(data)
        if not self.spawn.keep_before and len(self.parts) > 1:
            # `before` need only be the last RECENT bytes: drop the oldest read once
            # the newer ones hold that much and what a match may start in (the tail).
            self.kept += len(data)
            while len(self.parts) > 1 and self.kept >= RECENT + len(self.tail) + len(data):
                del self.parts[0]
                self.kept -= len(self.parts[0])
        return self.search(self.tail + data if self.tail else data, len(data))

    def search(self, window: bytes, freshlen: int) -> int | None:
        spawn = self.spawn
        index: int = self.searcher.search(window, freshlen, None)
        if index < 0:
            self.tail = window[-self.lookback:] if self.lookback else b""
            return None
        rest = window[self.searcher.end:]
        spawn._lazy_before(self.parts, len(window) - self.searcher.start)
        spawn._buffer = spawn.buffer_type()
        spawn._buffer.write(rest)
        spawn._before = spawn.buffer_type()
        spawn._before.write(rest)
        spawn.after = window[self.searcher.start:self.searcher.end]
        spawn.match = self.searcher.match
        spawn.match_index = index
        self.parts, self.tail = [], b""
        return index

    def _restore(self) -> None:
        """Back to pexpect's state with no match: all of it in `_before`, the tail in
        `_buffer` (all of it too when there is no string to look back for)."""
        spawn = self.spawn
        everything = b"".join(self.parts)
        spawn._before = spawn.buffer_type()
        spawn._before.write(everything)
        spawn._buffer = spawn.buffer_type()
        spawn._buffer.write(self.tail if self.lookback else everything)
        self.parts, self.tail = [], b""

    def eof(self, err: Exception | None = None) -> int:
        self._restore()
        index: int = super().eof(err)
        return index

    def timeout(self, err: Exception | None = None) -> int:
        self._restore()
        index: int = super().timeout(err)
        return index

    def errored(self) -> None:
        self._restore()
        super().errored()


class ConsoleSpawn(pexpect.spawnbase.SpawnBase):  # type: ignore[misc]
    """pexpect on the live console stream, fed by the channel's reader thread.

    Configured to stay linear in the output size: no delay after reads, reads of up to
    MAXREAD, a search window (for regexes) larger than a read. Prefer `expect_exact`: it
    looks back only a pattern's length. `before` keeps all output since the last match,
    so a session is for a bounded wait (login, a boot), not for hours; with
    `keep_before=False` (a waiter that gets the output elsewhere: the log, the line
    subscribers), expect_exact keeps only the last RECENT bytes or more of it, and its
    memory stays bounded however long the wait; after a wait that ends without a match
    (TIMEOUT), only those bytes are searched again (as with a search window).
    """

    buffer: bytes  # pexpect's property: what is left after the last match
    _before_parts: tuple[list[bytes], int] | None = None
    _before_value: bytes | None = None

    def __init__(self, channel: SerialChannel, tap: _Tap, timeout: float,
                 maxread: int = MAXREAD, searchwindowsize: int = SEARCH_WINDOW,
                 keep_before: bool = True) -> None:
        super().__init__(timeout=timeout, maxread=maxread, searchwindowsize=searchwindowsize)
        self.keep_before = keep_before
        self.delayafterread = None
        self.channel = channel
        self.tap = tap
        self.closed = False

    def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> bytes:
        if timeout == -1:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            data = self.tap.take(size, None if remaining is None else max(0.0, remaining))
            if data:
                return data
            if self.tap.closed is not None:
                self.flag_eof = True
                raise pexpect.EOF(f"console {self.channel.url}: {self.tap.closed}")
            if remaining is not None and remaining <= 0:
                raise pexpect.TIMEOUT(f"no console output within {timeout:g} s")

    @property
    def before(self) -> bytes | None:
        """pexpect's `before`: all output from the last match to this one (or to the
        timeout, EOF); joined when first read (see _LazyBeforeExpecter)."""
        if self._before_parts is not None:
            parts, cut = self._before_parts
            self._before_parts = None
            while parts and cut >= len(parts[-1]):
                cut -= len(parts[-1])
                parts = parts[:-1]
            if cut and parts:
                parts = [*parts[:-1], parts[-1][:-cut]]
            self._before_value = b"".join(parts)
        return self._before_value

    @before.setter
    def before(self, value: bytes | None) -> None:
        self._before_parts = None
        self._before_value = value

    def _lazy_before(self, parts: list[bytes], cut: int) -> None:
        """`before` is `parts` joined, less its last `cut` bytes (the match and after)."""
        if cut:
            self._before_parts = (parts, cut)
        else:  # pexpect slices `[0:-0]`: nothing (an empty pattern at the very end)
            self.before = b""

    def expect_exact(self, pattern_list: Any, timeout: float | None = -1,
                     searchwindowsize: int | None = None, **kwargs: Any) -> int:
        """pexpect's expect_exact, looking back only a pattern's length by default:
        a search window would rescan up to SEARCH_WINDOW bytes on every small read.
        Without a window, from the state a match leaves (the usual one), it runs
        _LazyBeforeExpecter: the same matches and attributes, no copy of the output."""
        if searchwindowsize is not None or kwargs or not self._after_match():
            index: int = super().expect_exact(pattern_list, timeout, searchwindowsize,
                                              **kwargs)
            return index
        if timeout == -1:
            timeout = self.timeout
        if (isinstance(pattern_list, self.allowed_string_types)
                or pattern_list in (pexpect.TIMEOUT, pexpect.EOF)):
            pattern_list = [pattern_list]
        prepared = []
        for pattern in pattern_list:  # as SpawnBase.expect_exact prepares them
            if pattern in (pexpect.TIMEOUT, pexpect.EOF):
                prepared.append(pattern)
            elif isinstance(pattern, self.allowed_string_types):
                prepared.append(self._coerce_expect_string(pattern))
            else:
                self._pattern_type_err(pattern)
        expecter = _LazyBeforeExpecter(self, pexpect.expect.searcher_string(prepared))
        found: int = expecter.expect_loop(timeout)
        return found

    def _after_match(self) -> bool:
        """pexpect's buffers agree (a fresh session, after a match): its expect_exact
        would search all of `_buffer` as fresh data and cut `before` from `_before`."""
        return bool(self._before.tell() == self._buffer.tell()
                    and self._before.getvalue() == self._buffer.getvalue())

    def send(self, s: str | bytes) -> int:
        data = s.encode() if isinstance(s, str) else s
        self.channel.write(data)
        return len(data)

    def sendline(self, s: str | bytes = "") -> int:
        return self.send((s.encode() if isinstance(s, str) else s) + b"\n")

    def read_exactly(self, size: int, timeout: float) -> bytes | None:
        """`size` bytes (what expect left in the buffer first); fewer, or None, at the timeout."""
        deadline = time.monotonic() + timeout
        data = self.buffer
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                data += self.read_nonblocking(size - len(data), remaining)
            except pexpect.TIMEOUT:
                break
        self.buffer = data[size:]
        return data[:size] or None


class SerialChannel:
    """Runs shell commands over a serial console, logging everything it prints."""

    transport = "serial"
    separates_stderr = False

    def __init__(
        self,
        name: str,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        console_log: Path | None = None,
        quiet_kernel: bool = True,
        interrupt_grace: float = 5.0,
        redact: tuple[str, ...] = (),
        share_as: str | None = "run",
        reconnect_s: float = 0.0,
    ) -> None:
        self.name = name
        self.url = url
        self.user = user
        self._password = password
        self.console_log = console_log
        self.quiet_kernel = quiet_kernel
        self.interrupt_grace = interrupt_grace
        #: How long the reader tries to open a console that went away (0: it does not).
        self.reconnect_s = reconnect_s
        #: The prompt vet sets at login; unique to this session.
        self.prompt = f"vet-{secrets.token_hex(4)}$ "
        # Secrets that may cross the console (the login password, a run token a boot
        # loader or kernel might echo) never reach the log in clear.
        self._lines = ConsoleLines(
            console_log, secrets=tuple(s for s in (password, *redact) if s))
        self._port: Any = None
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._taps: list[_Tap] = []
        self._recent = b""  # the last RECENT bytes read, for console(replay=True)
        self._taps_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._cancelled = threading.Event()
        self._running: _Tap | None = None
        self._broken: str | None = None
        self._closed = False
        #: While open, the console is locked and shared with `vet console` (read-only
        #: unless forced; harness.console.share) as this; None: neither.
        self.share_as = share_as
        self._share: ConsoleShare | None = None
        self._state_subscribers: list[StateSubscriber] = []
        #: A command was cut off by a disconnect: it may still hold the shell.
        self._dirty = False

    # -- the port and its reader ---------------------------------------------------

    def open(self) -> None:
        """Connect to the console and start logging it; call before powering the host on."""
        if self._closed:
            raise ChannelError(f"host {self.name}: channel is closed; cannot open {self.url}")
        if self._reader is not None and self._reader.is_alive():
            return
        self._shutdown_port()
        try:
            self._port = open_serial(self.url)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ChannelError(f"host {self.name}: cannot open serial console {self.url}: {exc}"
                               ) from exc
        self._broken = None
        self._stop.clear()
        self._lines.note(f"vet: opened {self.url}")
        self._reader = threading.Thread(
            target=self._read_loop, name=f"serial-reader-{self.name}", daemon=True)
        self._reader.start()
        if self._share is None and self.share_as is not None:
            self._share = ConsoleShare.start(self, self.share_as)

    def _read_loop(self) -> None:
        """Read until stopped or disconnected: log, tell subscribers, feed waiters; with
        reconnect_s, open a console that went away again and go on reading."""
        while True:
            reason = self._read_until_broken()
            self._lines.flush_partial(time.time())
            stopping = self._stop.is_set()
            if not stopping:
                self._lines.note(f"vet: console disconnected: {reason}")
            with self._taps_lock:
                self._broken = reason
                taps = list(self._taps)
                if self._running is not None:
                    self._dirty = True
            for tap in taps:
                tap.close(reason)
            if stopping:
                return
            self._tell("lost", reason)
            if self.reconnect_s <= 0 or not self._reopen(reason):
                return

    def _read_until_broken(self) -> str:
        """Read the port now open until stopped or disconnected; says why it ended."""
        try:
            fd = _fileno(self._port)
            read = self._fd_reader(fd) if fd is not None else self._port_reader()
            while not self._stop.is_set():
                data = read()
                now = time.time()
                if data:
                    self._lines.feed(data, now)
                    with self._taps_lock:
                        self._recent = (self._recent + data[-RECENT:])[-RECENT:]
                        taps = list(self._taps)
                    for tap in taps:
                        tap.put(data)
                elif data is not None:  # quiet for a while: log the unfinished line
                    self._lines.flush_partial(now)
            return "channel closed"
        except _Disconnected as exc:
            return str(exc)
        except Exception as exc:
            log.exception("serial reader for %s failed", self.name)
            return f"reader failed: {exc!r}"

    def _reopen(self, reason: str) -> bool:
        """Open the console again (backoff, up to reconnect_s; close() ends the wait).
        True once it is open: what the host printed in the gap is lost, and said so."""
        started = time.monotonic()
        self._lines.note(f"vet: reconnecting for up to {self.reconnect_s:g} s")
        with contextlib.suppress(Exception):
            self._port.close()

        def pause(seconds: float) -> None:
            self._stop.wait(seconds)  # close() cuts the backoff short

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((serial.SerialException, OSError,
                                                    ValueError)),
            stop=tenacity.stop_any(tenacity.stop_after_delay(self.reconnect_s),
                                   _Stopped(self._stop)),
            wait=_RECONNECT_WAIT, sleep=pause, reraise=True)
        try:
            port = retrying(open_serial, self.url)
        except (serial.SerialException, OSError, ValueError) as exc:
            reason = str(exc) or reason
            port = None
        if self._stop.is_set():
            if port is not None:
                port.close()
            return False
        if port is None:
            self._lines.note(f"vet: console did not come back within {self.reconnect_s:g} s "
                             f"({reason}); nothing more is read from it")
            self._tell("gone", f"not back within {self.reconnect_s:g} s: {reason}")
            return False
        gap = time.monotonic() - started
        self._port = port
        with self._taps_lock:
            self._broken = None
        self._lines.note(f"vet: console reconnected after {gap:.1f} s; what the host printed "
                         "meanwhile is lost")
        self._tell("back", f"reconnected after {gap:.1f} s")
        return True

    def subscribe_state(self, callback: StateSubscriber) -> Callable[[], None]:
        """Call `callback(state, detail)` when the console is lost ("lost") and, with
        reconnect_s, when it is open again ("back") or given up ("gone")."""
        with self._taps_lock:
            self._state_subscribers.append(callback)

        def unsubscribe() -> None:
            with self._taps_lock, contextlib.suppress(ValueError):
                self._state_subscribers.remove(callback)

        return unsubscribe

    def _tell(self, state: str, detail: str) -> None:
        with self._taps_lock:
            subscribers = list(self._state_subscribers)
        for callback in subscribers:
            try:
                callback(state, detail)
            except Exception:
                log.exception("console state subscriber %r failed", callback)

    def _fd_reader(self, fd: int) -> Callable[[], bytes | None]:
        """Large reads straight from the descriptor; the wake pipe interrupts a wait."""

        def read() -> bytes | None:
            timeout = PARTIAL_LINE_S if self._lines.pending else None
            ready, _, _ = select.select([fd, self._wake_r], [], [], timeout)
            if not ready:
                return b""
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
                return None
            try:
                data = os.read(fd, MAXREAD)
            except BlockingIOError:
                return None
            except OSError as exc:  # EIO: the other side of a pty hung up
                raise _Disconnected(f"read failed: {exc}") from exc
            if not data:
                raise _Disconnected("the other end closed the connection")
            return data

        return read

    def _port_reader(self) -> Callable[[], bytes | None]:
        """For ports without a descriptor (rfc2217://): pyserial reads with a timeout."""
        self._port.timeout = PARTIAL_LINE_S

        def read() -> bytes | None:
            try:
                data: bytes = self._port.read(1)
                if data and self._port.in_waiting:
                    data += self._port.read(self._port.in_waiting)
            except (serial.SerialException, OSError) as exc:
                raise _Disconnected(str(exc)) from exc
            return data

        return read

    def write(self, data: bytes) -> None:
        """Type bytes on the console (keys, a command line, ^C)."""
        port = self._port
        if port is None or self._broken is not None:
            raise ChannelError(f"host {self.name}: serial console {self.url} is not connected"
                               f" ({self._broken or 'not opened'})")
        try:
            with self._write_lock:
                port.write(data)
                port.flush()
        except (serial.SerialException, OSError) as exc:
            raise ChannelError(f"host {self.name}: cannot write to serial console {self.url}:"
                               f" {exc}") from exc

    @contextlib.contextmanager
    def _tap(self, replay: bool = False) -> Iterator[_Tap]:
        tap = _Tap()
        with self._taps_lock:
            if replay and self._recent:
                tap.put(self._recent)
            if self._broken is not None:
                tap.close(self._broken)
            self._taps.append(tap)
        try:
            yield tap
        finally:
            with self._taps_lock:
                self._taps.remove(tap)

    def subscribe(self, callback: LineSubscriber) -> Callable[[], None]:
        """Call `callback(line, at)` for every console line, from the reader thread (keep
        it quick; never run() from it); returns the function that unsubscribes it."""
        return self._lines.subscribe(callback)

    def subscribe_lines(self, callback: LinesSubscriber) -> Callable[[], None]:
        """Call `callback(lines, at, log_offset)` once per read with the lines it
        completed (ConsoleWatch.feed_lines fits); `log_offset` is the console log's size
        after them (None without a log). Returns the function that unsubscribes it."""
        return self._lines.subscribe_lines(callback)

    @contextlib.contextmanager
    def console(self, timeout: float = 30.0, replay: bool = False,
                keep_before: bool = True) -> Iterator[ConsoleSpawn]:
        """A pexpect session on what the console prints from now on (with `replay`,
        starting with the last few KB already printed, such as a prompt on screen).
        `keep_before=False`: expect_exact's `before` is only the last RECENT bytes or more
        (for a wait whose output the log and subscribers have: constant memory)."""
        with self._tap(replay) as tap:
            yield ConsoleSpawn(self, tap, timeout, keep_before=keep_before)

    # -- login -----------------------------------------------------------------------

    def login(self, timeout: float = 60.0) -> None:
        """Log in (if asked to) and set the shell up for reliable command framing."""
        if self._reader is None:
            raise ChannelError(f"host {self.name}: open() the console before login()")
        deadline = time.monotonic() + timeout
        with self.console(replay=True) as con:
            if self._dirty:  # a command the disconnect cut off would hold the shell
                con.send(b"\x03\x03")
                self._dirty = False
            self._authenticate(con, deadline, timeout)
            self._set_up_shell(con, deadline, timeout)

    def _authenticate(self, con: ConsoleSpawn, deadline: float, timeout: float) -> None:
        patterns = [LOGIN_PROMPT, PASSWORD_PROMPT, LOGIN_INCORRECT, SHELL_PROMPT,
                    pexpect.TIMEOUT, pexpect.EOF]
        sent_password = False
        quiet = 1.0  # a prompt already on screen is in the replay; else poke after this
        while True:
            remaining = deadline - time.monotonic()
            index = con.expect(patterns, timeout=max(0.0, min(remaining, quiet)))
            if index == 0:
                if self.user is None:
                    raise ChannelError(f"host {self.name}: the console asks for a login "
                                       "but no user is configured")
                con.sendline(self.user)
            elif index == 1:
                if self._password is None:
                    raise ChannelError(f"host {self.name}: the console asks for a password "
                                       "but none is configured")
                con.sendline(self._password)
                sent_password = True
            elif index == 2 and sent_password:
                raise ChannelError(f"host {self.name}: login as {self.user!r} on {self.url} "
                                   "was refused (wrong user or password?)")
            elif index == 3:
                return
            elif index == 5:
                raise ChannelError(f"host {self.name}: serial console {self.url} "
                                   f"disconnected during login ({con.tap.closed})")
            elif index == 4:
                if remaining <= 0:
                    raise ChannelError(
                        f"host {self.name}: no login or shell prompt on {self.url} within "
                        f"{timeout:g} s; last seen: {_tail(con.before)!r}")
                con.send(b"\n")  # no prompt for a while: a getty or shell shows it again
                quiet = 5.0

    def _set_up_shell(self, con: ConsoleSpawn, deadline: float, timeout: float) -> None:
        """No readline (so no bracketed paste, no echo games), no echo, a unique prompt."""
        head, tail = self.prompt[:3], self.prompt[3:]  # typed split, so its echo never matches
        setup = (
            "bind 'set enable-bracketed-paste off' 2>/dev/null; set +o vi +o emacs +o history +H;"
            " set -m; IGNOREEOF=1000000; stty -echo; export TERM=dumb;"
            f" PS1='{head}''{tail}'; PS2=''; PS0=''; unset PROMPT_COMMAND"
        )
        if self.quiet_kernel:
            setup += "; dmesg -n 1 2>/dev/null"  # only emergencies (panics) still print
        wait = 1.0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChannelError(f"host {self.name}: the shell on {self.url} did not answer "
                                   f"within {timeout:g} s; last seen: {_tail(con.before)!r}")
            framed = frame_for_console("true")
            con.send(setup + "\n" + framed.line)
            index = con.expect_exact([framed.end_prefix, pexpect.TIMEOUT, pexpect.EOF],
                                     timeout=min(remaining, wait))
            if index == 0:
                return
            if index == 2:
                raise ChannelError(f"host {self.name}: serial console {self.url} "
                                   f"disconnected during login ({con.tap.closed})")
            wait *= 2  # a slow shell (or one that flushed what was typed): again

    # -- commands --------------------------------------------------------------------

    def run(
        self,
        command: str,
        timeout: float,
        on_line: LineHandler | None = None,
        command_id: str | None = None,
    ) -> CommandResult:
        framed = frame_for_console(command)
        if len(framed.line) > MAX_TTY_LINE:
            raise ChannelError(
                f"host {self.name}: command too long for a serial console line "
                f"({len(framed.line)} > {MAX_TTY_LINE} characters once framed): {command[:80]!r}")
        label = command_id or framed.command_id

        def emit(text: str) -> None:
            if on_line is not None:
                on_line(OutputLine("stdout", text, label))

        reader = MarkerReader(framed, emit)
        started = time.monotonic()
        deadline = started + timeout
        with self._run_lock, self._tap() as tap:
            if self._closed:
                raise ChannelError(f"host {self.name}: channel is closed; cannot run {command!r}")
            self._check_connected(command)
            self._cancelled.clear()
            if self._dirty:
                self._stop_leftover(tap, command)
            self._running = tap
            try:
                self.write(framed.line.encode())
                while not reader.done:
                    if self._cancelled.is_set():
                        stopped = self._interrupt(tap)
                        raise CommandCancelled(
                            f"host {self.name}: {command!r} cancelled; "
                            + ("stopped it" if stopped else "sent ^C but the shell did not answer"))
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        stopped = self._interrupt(tap)
                        raise CommandTimeout(
                            f"host {self.name}: {command!r} still running after {timeout:g} s; "
                            + ("sent ^C and stopped it" if stopped
                               else "sent ^C but the shell did not answer")
                            + f". Last output: {_last_line(reader.output)!r}")
                    data = tap.take(MAXREAD, remaining)
                    if data:
                        reader.feed(data)
                    elif tap.closed is not None:
                        raise ChannelError(
                            f"host {self.name}: serial console {self.url} disconnected while "
                            f"running {command!r} ({tap.closed}); the console log"
                            f"{'' if self.console_log is None else ' ' + str(self.console_log)}"
                            f" keeps what was read. Last output: {_last_line(reader.output)!r}")
            finally:
                self._running = None
        return CommandResult(
            command=command,
            exit_status=reader.exit_status if reader.exit_status is not None else -1,
            stdout=clean_output(reader.output),
            stderr="",
            duration_s=time.monotonic() - started,
        )

    def _stop_leftover(self, tap: _Tap, command: str) -> None:
        """^C what a disconnect cut off (it may still hold the shell) before `command`."""
        if not self._interrupt(tap):
            raise ChannelError(
                f"host {self.name}: a command cut off when serial console {self.url} "
                f"dropped still holds the shell (^C got no answer); cannot run {command!r}")
        self._dirty = False
        self._lines.note("vet: stopped the command the disconnect cut off")

    def _check_connected(self, command: str) -> None:
        if self._reader is None:
            raise ChannelError(f"host {self.name}: serial console not opened; cannot run "
                               f"{command!r} (open() and login() first)")
        if self._broken is not None:
            raise ChannelError(f"host {self.name}: serial console {self.url} is disconnected "
                               f"({self._broken}); cannot run {command!r}")

    def _interrupt(self, tap: _Tap) -> bool:
        """^C the running command, then wait for a fresh sync command to answer."""
        for key in (b"\x03", b"\x03", b"\x1c"):
            try:
                self.write(key)
            except ChannelError:
                return False
            if self._sync(tap, self.interrupt_grace):
                return True
        return False

    def _sync(self, tap: _Tap, timeout: float) -> bool:
        """True once the shell ran a new no-op command: it is idle and reading again.

        Asks again (fresh id) after 0.5 s, 1 s, 2 s...: a program leaving the terminal
        may flush what was typed meanwhile.
        """
        deadline = time.monotonic() + timeout
        wait = 0.5
        while tap.closed is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            framed = frame_for_console("true")
            reader = MarkerReader(framed)
            try:
                self.write(b"\x15" + framed.line.encode())  # ^U: drop a half-typed line
            except ChannelError:
                return False
            attempt_end = time.monotonic() + min(wait, remaining)
            while not reader.done and (left := attempt_end - time.monotonic()) > 0:
                reader.feed(tap.take(MAXREAD, left))
            if reader.done:
                return True
            wait *= 2
        return False

    def sync(self, timeout: float = 30.0) -> None:
        """Wait until the shell answers a fresh no-op (after raw console work)."""
        with self._run_lock, self._tap() as tap:
            if not self._sync(tap, timeout):
                raise ChannelError(f"host {self.name}: the shell on {self.url} did not answer "
                                   f"within {timeout:g} s")

    def cancel(self) -> None:
        """Stop the command now running (from any thread): ^C, then re-synchronise."""
        tap = self._running
        if tap is not None:
            self._cancelled.set()
            tap.wake()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._running is not None:
            self.cancel()
            if self._run_lock.acquire(timeout=3 * self.interrupt_grace + 1):
                self._run_lock.release()
        if self._share is not None:
            self._share.close()
            self._share = None
        self._shutdown_port()
        self._lines.note("vet: closed")
        self._lines.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _shutdown_port(self) -> None:
        if self._reader is not None:
            self._stop.set()
            os.write(self._wake_w, b"x")
            self._reader.join(timeout=10)
            self._reader = None
        if self._port is not None:
            with contextlib.suppress(Exception):
                self._port.close()
            self._port = None


class _Disconnected(Exception):
    """The console's other end went away."""


class _Stopped(tenacity.stop.stop_base):
    """Stop retrying once the channel is closing."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.event.is_set()


def _fileno(port: Any) -> int | None:
    """The port's descriptor where it has one (device paths, socket://), else None."""
    try:
        fd = port.fileno()
    except (AttributeError, OSError, ValueError, NotImplementedError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def _tail(data: Any, size: int = 200) -> str:
    if not isinstance(data, bytes | bytearray):
        return ""
    return bytes(data[-size:]).decode("utf-8", errors="replace")


def _last_line(output: str) -> str:
    return clean_output(output).rstrip().rsplit("\n", 1)[-1][-200:]
