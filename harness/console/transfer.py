"""Files to and from a host over its console, for when the network is down.

Two ways, both checked end to end with sha256:

- base64 (any Channel): `send_file` appends base64 chunks to `<path>.vet-b64` with one
  `printf %s <chunk> >> file` command each (each confirmed by its exit status), then
  decodes it on the host and compares the host's sha256; `get_file` reads
  `base64 < file` back through one run() and checks the host's sha256. Kernel messages
  that land inside the base64 are dropped (they are not base64) or make the checksum
  fail, and the read is tried again.
- XMODEM (SerialChannel only): the `xmodem` package against lrzsz's `rx -X` / `sx -X`
  on the host, 1 KB blocks with CRC (lrzsz's rx drops 1 KB blocks in checksum mode).
  Binary, so about twice the base64 speed on a slow line. XMODEM pads the last block,
  so the file is cut to its size afterwards. rx answers the final EOT after ~1 s.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import re
import shlex
import time

import pexpect
from xmodem import XMODEM  # type: ignore[import-untyped]

from harness.console.channel import Channel, ChannelError
from harness.console.markers import MAX_TTY_LINE, new_command_id
from harness.console.serial import MAXREAD, ConsoleSpawn, SerialChannel, frame_for_console

_SHA256 = re.compile(r"^([0-9a-f]{64})\b", re.MULTILINE)
_BASE64_LINE = re.compile(r"[A-Za-z0-9+/=]+")
_LINE_WIDTH = 76
_CAN, _EOT, _ACK, _RS = b"\x18", b"\x04", b"\x06", b"\x1e"


class TransferError(ChannelError):
    """A file could not be moved, or arrived different from what was sent."""


class _Deadline:
    def __init__(self, timeout: float, what: str) -> None:
        self.end = time.monotonic() + timeout
        self.timeout = timeout
        self.what = what

    def left(self) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise TransferError(f"{self.what}: not done within {self.timeout:g} s")
        return remaining


def _run(channel: Channel, command: str, deadline: _Deadline) -> str:
    result = channel.run(command, timeout=deadline.left())
    if not result.ok:
        raise TransferError(f"{deadline.what}: {command[:120]!r} failed with exit status "
                            f"{result.exit_status}: {result.stdout.strip()[-300:]!r}")
    return result.stdout


def _sha256_in(output: str, what: str) -> str:
    found = _SHA256.search(output)
    if found is None:
        raise TransferError(f"{what}: no sha256 in {output.strip()[-300:]!r}")
    return found.group(1)


def _chunk_size(remote_b64: str) -> int:
    """Most base64 characters per command that still fit one console line once framed."""
    framed = frame_for_console(f"printf %s  >> {remote_b64}", "0" * 12)
    room = MAX_TTY_LINE - len(framed.line) - 16
    return max(4, room // 4 * 4)


def send_file(channel: Channel, data: bytes, remote_path: str, timeout: float = 600.0) -> str:
    """Write `data` to `remote_path` on the host; returns the verified sha256."""
    what = f"sending {len(data)} bytes to {remote_path}"
    deadline = _Deadline(timeout, what)
    target, staging = shlex.quote(remote_path), shlex.quote(remote_path + ".vet-b64")
    encoded = base64.b64encode(data).decode()
    size = _chunk_size(staging)
    _run(channel, f": > {staging}", deadline)
    for start in range(0, len(encoded), size):
        _run(channel, f"printf %s {encoded[start:start + size]} >> {staging}", deadline)
    output = _run(channel, f"base64 -d {staging} > {target} && rm -f {staging} && "
                           f"sha256sum {target}", deadline)
    expected = hashlib.sha256(data).hexdigest()
    actual = _sha256_in(output, what)
    if actual != expected:
        raise TransferError(f"{what}: the host has sha256 {actual}, sent {expected}")
    return actual


def get_file(channel: Channel, remote_path: str, timeout: float = 600.0,
             attempts: int = 3) -> bytes:
    """The content of `remote_path` on the host, checked against the host's sha256."""
    what = f"reading {remote_path}"
    deadline = _Deadline(timeout, what)
    path = shlex.quote(remote_path)
    problem = ""
    for _ in range(attempts):
        output = _run(channel, f"sha256sum < {path} && base64 -w {_LINE_WIDTH} < {path}",
                      deadline)
        expected = _sha256_in(output, what)
        lines = [line for line in output.split("\n") if _BASE64_LINE.fullmatch(line)]
        if any(len(line) != _LINE_WIDTH for line in lines[:-1]):
            problem = "a base64 line arrived torn (console noise?)"
            continue
        try:
            data = base64.b64decode("".join(lines), validate=True)
        except ValueError as exc:
            problem = f"bad base64: {exc}"
            continue
        actual = hashlib.sha256(data).hexdigest()
        if actual == expected:
            return data
        problem = f"read sha256 {actual}, the host has {expected}"
    raise TransferError(f"{what}: failed {attempts} times; last: {problem}")


def _framed_in_shell(command: str) -> tuple[bytes, bytes, str]:
    """`command` run in the login shell itself (the tty as its stdin) between markers."""
    command_id = new_command_id()
    line = (f"printf '\\036VET:{command_id}:B\\036\\n'; {command} 2>/dev/null; "
            f"printf '\\036VET:{command_id}:E:%d\\036\\n' \"$?\"\n")
    marker = b"\x1eVET:" + command_id.encode()
    return marker + b":B\x1e", marker + b":E:", line


def _xmodem(con: ConsoleSpawn, deadline: _Deadline, sending: bool, pace: float) -> XMODEM:
    """XMODEM over the console session; it stops as soon as rx / sx is gone.

    Where XMODEM waits for one control byte, the end marker's RS means the program on
    the host has exited: nothing more may be sent then, or it would be typed into the
    shell.
    """
    eot_sent = False

    def getc(size: int, timeout: float = 1) -> bytes | None:
        data = con.read_exactly(size, min(timeout, deadline.left()))
        if size == 1 and data == _RS:
            con.buffer = data + con.buffer  # for the end marker
            if sending and eot_sent:
                return _ACK  # rx took the file but its last ACK got lost; sha256 decides
            raise TransferError(f"{deadline.what}: the host's XMODEM program exited early")
        return data

    def putc(data: bytes, timeout: float = 1) -> int:
        nonlocal eot_sent
        if pace:
            # lrzsz's rx flushes its input just after sending C / ACK: a block (or the
            # EOT) arriving sooner loses its head and costs a 5-10 s retry. Give it `pace`.
            with contextlib.suppress(pexpect.TIMEOUT):
                con.buffer += con.read_nonblocking(MAXREAD, pace)
        eot_sent = data == _EOT
        return con.send(data)

    return XMODEM(getc, putc, mode="xmodem1k")


def _xmodem_session(channel: SerialChannel, command: str, deadline: _Deadline,
                    data: io.BytesIO, sending: bool, pace: float = 0.0) -> str:
    """Run rx or sx on the host and move the file; "" if all went well, else what failed.

    The sha256 check afterwards is what counts: lrzsz's rx sometimes exits without
    acknowledging the final EOT although the file is complete.
    """
    begin, end, line = _framed_in_shell(command)
    problem = ""
    with channel.console(timeout=deadline.left()) as con:
        con.send(line)
        started = [begin + b"\r\n", begin + b"\n", pexpect.TIMEOUT, pexpect.EOF]
        if con.expect_exact(started, timeout=deadline.left()) > 1:
            raise TransferError(f"{deadline.what}: {command!r} did not start")
        modem = _xmodem(con, deadline, sending, pace)
        try:
            if sending:
                ok = bool(modem.send(data, retry=16, timeout=10, quiet=True))
            else:
                ok = modem.recv(data, crc_mode=1, retry=16, timeout=10, quiet=1) is not None
        except TransferError as exc:
            ok, problem = False, str(exc)
        if not ok:
            con.send(_CAN * 8)  # stop rx / sx if it still waits
            problem = problem or "XMODEM gave up"
        found = con.expect([re.escape(end) + rb"(\d+)\x1e", pexpect.TIMEOUT, pexpect.EOF],
                           timeout=min(30.0, deadline.left()))
        status = int(con.match.group(1)) if found == 0 else None
    channel.sync(min(30.0, deadline.left()))
    if status == 127:
        raise TransferError(f"{deadline.what}: {command.split()[0]} is not installed on the "
                            "host (Debian package lrzsz)")
    if status not in (0, None):
        raise TransferError(f"{deadline.what}: {command!r} failed with exit status {status}"
                            f"{f' ({problem})' if problem else ''}")
    return problem


def send_file_xmodem(channel: SerialChannel, data: bytes, remote_path: str,
                     timeout: float = 600.0, pace: float = 0.01) -> str:
    """Write `data` to `remote_path` with lrzsz's rx on the host; returns the sha256.

    `pace`: pause before each block (see putc in _xmodem); 10 ms is ~10 % of a 1 KB
    block's time on a 115200 baud line.
    """
    what = f"sending {len(data)} bytes to {remote_path} by XMODEM"
    deadline = _Deadline(timeout, what)
    target = shlex.quote(remote_path)
    problem = _xmodem_session(channel, f"rx -X -c -b -y -q {target}", deadline,
                              io.BytesIO(data), sending=True, pace=pace)
    output = _run(channel, f"truncate -s {len(data)} {target} && sha256sum {target}", deadline)
    expected = hashlib.sha256(data).hexdigest()
    actual = _sha256_in(output, what)
    if actual != expected:
        raise TransferError(f"{what}: the host has sha256 {actual}, sent {expected}"
                            f"{f' ({problem})' if problem else ''}")
    return actual


def get_file_xmodem(channel: SerialChannel, remote_path: str, timeout: float = 600.0) -> bytes:
    """The content of `remote_path`, sent by lrzsz's sx on the host, checked by sha256."""
    what = f"reading {remote_path} by XMODEM"
    deadline = _Deadline(timeout, what)
    path = shlex.quote(remote_path)
    output = _run(channel, f"stat -c %s {path} && sha256sum < {path}", deadline)
    size = int(output.split()[0])
    expected = _sha256_in(output.split("\n", 1)[1], what)
    received = io.BytesIO()
    problem = _xmodem_session(channel, f"sx -X -k -b -q {path}", deadline, received,
                              sending=False)
    data = received.getvalue()[:size]
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise TransferError(f"{what}: received sha256 {actual}, the host has {expected}"
                            f"{f' ({problem})' if problem else ''}")
    return data
