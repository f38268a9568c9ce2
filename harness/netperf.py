"""The controller's end of network tests: an iperf3 server it starts and stops."""

from __future__ import annotations

import collections
import selectors
import shutil
import socket
import subprocess
import threading
import time
from types import TracebackType

from harness.errors import ToolMissing, VetError


def free_port(address: str) -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


class Iperf3Server:
    """`iperf3 -s` bound to one address; ready once it says it listens."""

    def __init__(self, address: str = "127.0.0.1", port: int | None = None,
                 ready_timeout: float = 15.0) -> None:
        self.address = address
        self.port = port or free_port(address)
        self.ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=200)

    def start(self) -> Iperf3Server:
        binary = shutil.which("iperf3")
        if binary is None:
            raise ToolMissing("the controller has no `iperf3`; install the Debian package "
                              "'iperf3' (apt-get install iperf3)")
        self._proc = subprocess.Popen(
            [binary, "-s", "--bind", self.address, "-p", str(self.port), "--forceflush"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self._await_listening()
        # Keep reading after start-up: a full pipe would block the server mid-test.
        self._drain = threading.Thread(target=self._keep_tail, daemon=True)
        self._drain.start()
        return self

    def _keep_tail(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.tail.append(line.decode(errors="replace").rstrip())

    def _await_listening(self) -> None:
        """Block on the server's own output until it listens, or fail at the deadline."""
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + self.ready_timeout
        seen = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            while b"Server listening" not in seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    self.stop()
                    raise VetError(f"iperf3 server on {self.address}:{self.port} did not start "
                                   f"within {self.ready_timeout:g} s; it said: {seen[-300:]!r}")
                chunk = self._proc.stdout.read1(4096)  # type: ignore[attr-defined]
                if not chunk:
                    self.stop()
                    raise VetError(f"iperf3 server on {self.address}:{self.port} exited: "
                                   f"{seen.decode(errors='replace')[-300:]}")
                seen += chunk

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> Iperf3Server:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
