"""`vet console HOST`: the operator's terminal on a host's serial console.

Like a console server session: the terminal goes raw, keys go to the host, what the
host prints comes back, and Ctrl-] then q detaches (printed on attach; Ctrl-] twice
types one Ctrl-], Ctrl-] ? shows the keys). The terminal settings are restored on any
exit.

Who else is on that console decides the mode (harness.console.lock / share):
- nobody: vet opens the console itself (a SerialChannel, so it is locked and shared in
  turn) read-write, and logs it to the host's console log of the run in progress (the
  store's latest run, if still running and listing the host), else to
  reports/consoles/<host>.log, in the run console log format;
- a run (or another `vet console`) holds it: vet attaches through the holder's share
  socket, read-only unless --force; the holder's console log keeps recording, and the
  holder's connection, the only one to the endpoint, is never disturbed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from harness.console.lock import holder
from harness.console.serial import SerialChannel
from harness.console.share import connect, pump_client
from harness.errors import VetError
from harness.store import Store

ESCAPE = 0x1D  # Ctrl-]
ESCAPE_HELP = "Ctrl-] q detaches, Ctrl-] Ctrl-] types Ctrl-], Ctrl-] ? shows this"
DEFAULT_INVENTORY = "inventory/local"


class EscapeKeys:
    """Splits typed bytes into what goes to the console and the escape commands."""

    def __init__(self) -> None:
        self._pending = False

    def feed(self, keys: bytes) -> tuple[bytes, str | None]:
        """(bytes to send, "detach" / "help" / None); what follows a command is dropped."""
        out = bytearray()
        for key in keys:
            if self._pending:
                self._pending = False
                if key in b"qQ.":
                    return bytes(out), "detach"
                if key == ord("?"):
                    return bytes(out), "help"
                if key != ESCAPE:
                    out.append(ESCAPE)
                out.append(key)
            elif key == ESCAPE:
                self._pending = True
            else:
                out.append(key)
        return bytes(out), None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _say(fd: int, text: str) -> None:
    """A line of vet's own on a raw terminal."""
    _write_all(fd, f"\r\n[vet console] {text}\r\n".encode())


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal in raw mode; its settings restored on every way out (SIGTERM,
    SIGHUP included: they become SystemExit here)."""
    saved = termios.tcgetattr(fd)

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    handlers = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def attach(sock: socket.socket, writable: bool, stdin: int, stdout: int) -> str:
    """Terminal <-> console until detached ("detached") or the console ends ("closed")."""
    keys = EscapeKeys()
    told = False
    while True:
        ready, _, _ = select.select([stdin, sock], [], [])
        if sock in ready:
            data = sock.recv(1 << 16)
            if not data:
                return "closed"
            _write_all(stdout, data)
        if stdin in ready:
            typed = os.read(stdin, 1024)
            if not typed:
                return "detached"
            send, command = keys.feed(typed)
            if send and writable:
                sock.sendall(send)
            elif send and not told:
                _say(stdout, "read-only: typing is ignored (--force to type; Ctrl-] q detaches)")
                told = True
            if command == "detach":
                return "detached"
            if command == "help":
                _say(stdout, ESCAPE_HELP)


def _find_host(args: argparse.Namespace) -> Any:
    from harness.inventory import load_inventory

    hosts = {h.name: h for h in load_inventory(args.inventory, None,
                                               args.vault_password_file)}
    host = hosts.get(args.host)
    if host is None:
        raise VetError(f"{args.inventory}: no host {args.host!r}; hosts: "
                       f"{', '.join(sorted(hosts)) or '(none)'} (pass --inventory)")
    if not host.console:
        raise VetError(f"{args.inventory}: host {args.host} has no vet_console; set it to the "
                       "console's URL, e.g. vet_console: socket://10.0.0.5:7001 "
                       "(docs/INVENTORY.md)")
    return host


def console_log_for(args: argparse.Namespace, name: str) -> Path:
    """The run's console log when a run of this host is in progress, else reports/consoles."""
    reports = Path(args.reports_dir)
    store_path = Path(args.store) if args.store else reports / "vet.sqlite"
    if store_path.exists():
        with Store(store_path) as store:
            run_id = store.latest_run_id()
            run = store.run(run_id) if run_id else None
            if run is not None and run["status"] == "running" and any(
                    h["name"] == name for h in store.hosts(str(run_id))):
                return reports / "runs" / str(run_id) / name / "console.log"
    return reports / "consoles" / f"{name}.log"


def cmd_console(args: argparse.Namespace) -> int:
    host = _find_host(args)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    if not os.isatty(stdin):
        raise VetError("vet console needs a terminal on standard input (run it from a shell, "
                       "not a pipe)")
    held = holder(host.console)
    if held is not None:
        return _attach_shared(args, host, held, stdin, stdout)
    log_path = console_log_for(args, host.name)
    channel = SerialChannel(host.name, host.console, console_log=log_path,
                            share_as="vet console")
    channel.open()  # a ChannelError names the host and URL
    try:
        mine = holder(host.console)
        if mine is None or mine.get("pid") != os.getpid():  # a run took it meanwhile
            channel.close()
            return _attach_shared(args, host, mine or {}, stdin, stdout)
        ours, theirs = socket.socketpair()
        pump = threading.Thread(target=_pump_quietly, args=(channel, theirs), daemon=True)
        pump.start()
        print(f"vet console: {host.name} on {host.console}, read-write; logging to "
              f"{log_path}\r\nvet console: {ESCAPE_HELP}", flush=True)
        try:
            with raw_terminal(stdin):
                why = attach(ours, True, stdin, stdout)
        finally:
            ours.close()
            pump.join(timeout=5)
    finally:
        channel.close()
    print(f"\r\nvet console: {'detached' if why == 'detached' else 'console closed'} "
          f"({host.name})", flush=True)
    return 0 if why == "detached" else 1


def _pump_quietly(channel: SerialChannel, client: socket.socket) -> None:
    with contextlib.suppress(OSError):
        pump_client(channel, client, writable=True)
    client.close()


def _attach_shared(args: argparse.Namespace, host: Any, held: dict[str, Any], stdin: int,
                   stdout: int) -> int:
    who = f"{held.get('purpose', 'a run')} (pid {held.get('pid', '?')})"
    if not held.get("socket"):
        raise VetError(f"host {host.name}: console {host.console} is held by {who}, which does "
                       "not share it; wait for it to finish")
    try:
        sock = connect(str(held["socket"]), writable=args.force)
    except OSError as exc:
        raise VetError(f"host {host.name}: console {host.console} is held by {who}, but its "
                       f"share socket {held['socket']} does not answer ({exc}); try again, or "
                       "wait for it to finish") from None
    mode = ("read-write (FORCED: what you type goes to the console the run is driving)"
            if args.force else "READ-ONLY (a run is driving it; --force to type)")
    print(f"vet console: {host.name} on {host.console} is driven by {who}; attached {mode}"
          f"\r\nvet console: the run keeps logging it to {held.get('console_log') or '(none)'}"
          f"\r\nvet console: {ESCAPE_HELP}", flush=True)
    try:
        with raw_terminal(stdin):
            why = attach(sock, args.force, stdin, stdout)
    finally:
        sock.close()
    print(f"\r\nvet console: {'detached' if why == 'detached' else 'console closed'} "
          f"({host.name})", flush=True)
    return 0 if why == "detached" else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    console = sub.add_parser(
        "console", help="attach this terminal to a host's serial console (Ctrl-] q detaches)")
    console.add_argument("host", help="inventory host name")
    console.add_argument("--inventory", default=DEFAULT_INVENTORY,
                         help=f"Ansible inventory (default {DEFAULT_INVENTORY})")
    console.add_argument("--vault-password-file", default=None)
    console.add_argument("--force", action="store_true",
                         help="type on a console a run is driving (default: read-only there)")
    console.set_defaults(func=cmd_console)
