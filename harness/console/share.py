"""A console one process drives, shared with `vet console` over a Unix socket.

Serial endpoints serve one client: QEMU's `socket,server=on` chardev leaves a second
TCP client connected but silent until the first leaves (measured: the second gets no
byte while the first is attached, and the first loses nothing); ser2net refuses it by
default; two readers of one tty device steal bytes from each other. So a second user
must never open the console itself while a run drives it. Instead the process that
holds the console (its SerialChannel) serves it, like a console server:

- it takes the console lock (harness.console.lock) and listens on
  `<runtime dir>/consoles/<key>.sock` (mode 0600, inside a 0700 directory);
- a client sends one line, `ro` or `rw`, then receives the console stream from the
  holder's reader thread (starting with the last few KB, such as the prompt on screen);
- a `rw` client's bytes are typed on the console; a `ro` client's bytes are dropped.

Everything the console prints still goes through the holder's reader, so its console
log keeps recording whoever is attached. The holder stays the only connection to the
endpoint, so a viewer can never break the run's session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from harness.console.lock import ConsoleLock, console_key, runtime_dir

if TYPE_CHECKING:
    from harness.console.serial import SerialChannel

log = logging.getLogger(__name__)

#: Most bytes one read of the console stream hands a client.
CHUNK = 1 << 16
#: Longest mode line a client may send.
_MODE_LINE = 8


class ConsoleShare:
    """Holds a console's lock and serves the console to `vet console` clients."""

    def __init__(self, channel: SerialChannel, lock: ConsoleLock, path: Path,
                 listener: socket.socket) -> None:
        self.channel = channel
        self.lock = lock
        self.path = path
        self._listener = listener
        self._stop = threading.Event()
        self._clients: list[socket.socket] = []
        self._clients_lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"console-share-{channel.name}")
        self._thread.start()

    @classmethod
    def start(cls, channel: SerialChannel, purpose: str = "run") -> ConsoleShare | None:
        """Lock and share `channel`'s console; None (logged) if someone else holds it or
        the runtime directory is unusable: sharing must never stop a run."""
        try:
            path = runtime_dir() / "consoles" / f"{console_key(channel.url)}.sock"
            lock = ConsoleLock.take(channel.url, {
                "host": channel.name, "purpose": purpose, "socket": str(path),
                "console_log": None if channel.console_log is None else str(channel.console_log),
            })
        except OSError as exc:
            log.warning("cannot lock console %s of %s: %s", channel.url, channel.name, exc)
            return None
        if lock is None:
            log.info("console %s of %s is held by another process; not sharing it",
                     channel.url, channel.name)
            return None
        try:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # left by a holder that died (we hold the lock now)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            os.chmod(path, 0o600)
            listener.listen(4)
        except OSError as exc:
            lock.release()
            log.warning("cannot share console %s of %s: %s", channel.url, channel.name, exc)
            return None
        return cls(channel, lock, path, listener)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._clients_lock:
                if self._stop.is_set():
                    client.close()
                    return
                self._clients.append(client)
            threading.Thread(target=self.serve, args=(client,), daemon=True,
                             name=f"console-client-{self.channel.name}").start()

    def serve(self, client: socket.socket) -> None:
        """Pump one client (after its mode line) until it or the console goes away."""
        try:
            mode = _read_mode(client)
            if mode in ("ro", "rw"):
                pump_client(self.channel, client, writable=mode == "rw")
            else:
                client.sendall(b"vet: expected 'ro' or 'rw'\n")
        except OSError:
            pass  # the client went away
        finally:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
            with self._clients_lock, contextlib.suppress(ValueError):
                self._clients.remove(client)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._clients_lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.lock.release()


def pump_client(channel: SerialChannel, client: socket.socket, writable: bool) -> None:
    """The console stream to `client` (last few KB first); its bytes typed if `writable`.

    Returns when the client closes its side or the console goes away (then the client
    is told why). Raises OSError when the client vanishes mid-send.
    """
    with channel.console(replay=True) as con:
        tap = con.tap
        gone = threading.Event()

        def typing() -> None:
            try:
                while data := client.recv(CHUNK):
                    if writable:
                        channel.write(data)
            except Exception as exc:  # a closed socket, or a console that went away
                log.debug("console client of %s: %s", channel.name, exc)
            finally:
                gone.set()
                tap.wake()

        threading.Thread(target=typing, daemon=True, name=f"console-keys-{channel.name}"
                         ).start()
        while not gone.is_set():
            data = tap.take(CHUNK, None)
            if data:
                client.sendall(data)
            elif tap.closed is not None:
                client.sendall(f"\r\nvet: console closed: {tap.closed}\r\n".encode())
                return


def _read_mode(client: socket.socket) -> str:
    line = b""
    while not line.endswith(b"\n") and len(line) < _MODE_LINE:
        piece = client.recv(1)
        if not piece:
            break
        line += piece
    return line.decode(errors="replace").strip()


def connect(socket_path: str, writable: bool, timeout: float = 5.0) -> socket.socket:
    """A client connection to a shared console (raises OSError if the holder is gone)."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(socket_path)
        client.sendall(b"rw\n" if writable else b"ro\n")
    except OSError:
        client.close()
        raise
    client.settimeout(None)
    return client
