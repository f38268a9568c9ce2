"""LocalChannel: commands on the controller itself (the `localhost` host)."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
import uuid

from harness.console.channel import (
    ChannelError,
    CommandCancelled,
    CommandTimeout,
    LineHandler,
    OutputLine,
)
from harness.models import CommandResult


class _LineSplitter:
    """Turns chunks of bytes into complete lines, keeping the unfinished tail."""

    def __init__(self, stream: str, command_id: str, on_line: LineHandler | None) -> None:
        self.stream = stream
        self.command_id = command_id
        self.on_line = on_line
        self.chunks: list[bytes] = []
        self._tail = b""

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.on_line is None:
            return
        *lines, self._tail = (self._tail + data).split(b"\n")
        for line in lines:
            self._emit(line)

    def finish(self) -> str:
        if self.on_line is not None and self._tail:
            self._emit(self._tail)
            self._tail = b""
        return b"".join(self.chunks).decode("utf-8", errors="replace")

    def _emit(self, raw: bytes) -> None:
        assert self.on_line is not None
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        self.on_line(OutputLine(self.stream, text, self.command_id))


class LocalChannel:
    """Runs each command in its own process group so a cancel stops all of it."""

    transport = "local"
    separates_stderr = True

    def __init__(self, name: str = "localhost", shell: str = "/bin/bash") -> None:
        self.name = name
        self.shell = shell
        self._lock = threading.Lock()
        self._current: subprocess.Popen[bytes] | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._cancelled = threading.Event()
        self._closed = False

    def run(
        self,
        command: str,
        timeout: float,
        on_line: LineHandler | None = None,
        command_id: str | None = None,
    ) -> CommandResult:
        if self._closed:
            raise ChannelError(f"host {self.name}: channel is closed; cannot run {command!r}")
        command_id = command_id or uuid.uuid4().hex[:12]
        started = time.monotonic()
        self._cancelled.clear()
        try:
            proc = subprocess.Popen(
                [self.shell, "-c", command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise ChannelError(f"host {self.name}: cannot start {self.shell}: {exc}") from exc
        with self._lock:
            self._current = proc
        out = _LineSplitter("stdout", command_id, on_line)
        err = _LineSplitter("stderr", command_id, on_line)
        try:
            self._pump(proc, out, err, command, started + timeout, timeout)
            exit_status = proc.wait()
        except BaseException:
            self._kill(proc)
            raise
        finally:
            with self._lock:
                self._current = None
        return CommandResult(
            command=command,
            exit_status=exit_status,
            stdout=out.finish(),
            stderr=err.finish(),
            duration_s=time.monotonic() - started,
        )

    def _pump(
        self,
        proc: subprocess.Popen[bytes],
        out: _LineSplitter,
        err: _LineSplitter,
        command: str,
        deadline: float,
        timeout: float,
    ) -> None:
        """Read both pipes until EOF, waking early on cancel or at the deadline."""
        assert proc.stdout is not None and proc.stderr is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ, out)
            selector.register(proc.stderr, selectors.EVENT_READ, err)
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            open_pipes = 2
            while open_pipes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._kill(proc)
                    last = (out.finish() + err.finish()).rstrip().rsplit("\n", 1)[-1]
                    raise CommandTimeout(
                        f"host {self.name}: {command!r} still running after {timeout:g} s; "
                        f"stopped it. Last output: {last[-200:]!r}"
                    )
                for key, _ in selector.select(remaining):
                    if key.data is None:
                        os.read(self._wake_r, 4096)
                        if self._cancelled.is_set():
                            self._kill(proc)
                            raise CommandCancelled(
                                f"host {self.name}: {command!r} cancelled; stopped it"
                            )
                        continue
                    data = os.read(key.fd, 65536)
                    if data:
                        key.data.feed(data)
                    else:
                        selector.unregister(key.fileobj)
                        open_pipes -= 1

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop the whole process group: the shell and everything it started."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()

    def cancel(self) -> None:
        self._cancelled.set()
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            proc = self._current
        if proc is not None:
            self.cancel()
        os.close(self._wake_r)
        os.close(self._wake_w)
