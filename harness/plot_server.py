"""One process draws every plot of a run, so no xdist worker carries matplotlib.

matplotlib with numpy and PIL is ~37 MB in each process that draws, and a run with one
worker per host would pay it per host (issue 8's memory per host; docs/BENCHMARKS.md).
The controller starts this server once, when the run has a plotting stage; it imports
matplotlib and draws once while the hosts boot, then renders what workers send it over
a Unix socket (multiprocessing.connection: pickled requests, an auth key). Requests are
(title, panels, xlabel) as harness.plots.render takes them; answers ("ok", PNG bytes) or
("error", text).

It ends when its stdin closes: the controller closes it at the end of the run, and the
kernel closes it when the controller dies, even by SIGKILL. A worker that cannot reach it
draws the plot itself (PlotService.render), so a plot is never lost to this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import subprocess
import sys
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from harness.errors import VetError
from harness.plots import Panels, render

log = logging.getLogger(__name__)

#: Seconds the controller waits for the server to listen (it listens before it warms up).
START_TIMEOUT_S = 30.0
_READY = b"vet-plots: listening\n"


class PlotService:
    """Where a run's plot server listens; the client side, used from any process."""

    def __init__(self, address: str, authkey: bytes) -> None:
        self.address = address  # an abstract Unix socket (a leading NUL): no file left
        self.authkey = authkey
        self._lock = threading.Lock()  # one request at a time on the connection
        self._conn: Connection | None = None

    def to_json(self) -> dict[str, str]:
        return {"address": self.address, "authkey": self.authkey.hex()}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> PlotService:
        return cls(data["address"], bytes.fromhex(data["authkey"]))

    def render(self, title: str, panels: Panels, xlabel: str) -> bytes:
        """The PNG, drawn by the server; drawn here if the server cannot be reached."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = Client(self.address, family="AF_UNIX", authkey=self.authkey)
                self._conn.send((title, list(panels), xlabel))
                status, payload = self._conn.recv()
            except (OSError, EOFError, AuthenticationError) as exc:
                self._conn = None
                log.warning("plot server unreachable (%s): drawing in this process", exc)
                return render(title, panels, xlabel)
        if status != "ok":
            raise RuntimeError(f"the plot server could not draw it: {payload}")
        assert isinstance(payload, bytes)
        return payload


def start() -> tuple[PlotService, subprocess.Popen[bytes]]:
    """Start a run's plot server; returns once it listens."""
    # Not the run id in the name: an abstract address holds at most 107 bytes.
    service = PlotService(f"\0vet-plots-{os.getpid()}-{secrets.token_hex(8)}",
                          secrets.token_bytes(32))
    proc = subprocess.Popen([sys.executable, "-m", "harness.plot_server"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    stdin, stdout = proc.stdin, proc.stdout
    assert stdin is not None and stdout is not None
    stdin.write(f"{service.authkey.hex()}\n{service.address[1:]}\n".encode())
    stdin.flush()
    ready: list[bytes] = []
    reader = threading.Thread(target=lambda: ready.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    if ready != [_READY]:
        stop(proc)
        raise VetError(f"the run's plot server did not start within {START_TIMEOUT_S:g} s "
                       f"(it said {ready[:1]!r}); run `{sys.executable} -m harness.plot_server` "
                       "to see why")
    return service, proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Close its stdin (it ends itself), then make sure."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):  # a broken pipe: it is gone already
            proc.stdin.close()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _serve_connection(conn: Connection, drawing: threading.Lock) -> None:
    with conn:
        while True:
            try:
                title, panels, xlabel = conn.recv()
            except (EOFError, OSError):
                return
            try:
                with drawing:  # one figure at a time: matplotlib is not thread-safe
                    answer: tuple[str, Any] = ("ok", render(title, panels, xlabel))
            except Exception as exc:  # the client says which plot failed and why
                answer = ("error", f"{type(exc).__name__}: {exc}")
            try:
                conn.send(answer)
            except OSError:
                return


def serve() -> None:
    """The server's main: read the key and address from stdin, listen, draw."""
    authkey = bytes.fromhex(sys.stdin.buffer.readline().decode().strip())
    address = "\0" + sys.stdin.buffer.readline().decode().rstrip("\n")
    listener = Listener(address, family="AF_UNIX", authkey=authkey)
    sys.stdout.buffer.write(_READY)
    sys.stdout.buffer.flush()
    drawing = threading.Lock()

    def warm_up() -> None:  # the first figure pays fonts and caches (~0.4 s)
        with drawing:
            render("warm-up", [("value", [("", [(0.0, 0.0), (1.0, 1.0)])])])

    def until_stdin_closes() -> None:
        sys.stdin.buffer.read()
        os._exit(0)  # the controller is done or dead: nothing here is worth finishing

    threading.Thread(target=warm_up, daemon=True).start()
    threading.Thread(target=until_stdin_closes, daemon=True).start()
    while True:
        try:
            conn = listener.accept()
        except (OSError, EOFError, AuthenticationError):  # e.g. a client with a wrong key
            continue
        threading.Thread(target=_serve_connection, args=(conn, drawing), daemon=True).start()


if __name__ == "__main__":
    serve()
