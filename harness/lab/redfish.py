"""The lab's Redfish service: sushy-tools' emulator with a systems driver that drives QMP.

sushy-tools is OpenStack's Redfish emulator (Ironic's own test BMC), so the lab
answers with real Redfish documents: ServiceRoot, Systems, Managers, Chassis,
ComputerSystem.Reset and the error format, not a hand-made imitation. Its
libvirt/nova/ironic drivers do not fit QEMU guests started by vet, so this module
adds `QmpSystems` (one System per guest, UUID URLs; a name URL answers 307 to the
UUID one) and plugs it into the emulator's Flask app. The emulator picks its
driver inside a property of its module-level app with no hook to add one, so the
app's class is swapped for a subclass that returns ours; sushy-tools is pinned to
the 2.2 series this was written against.

Run as a process:

    python -m harness.lab.redfish --address 127.0.0.1 --port PORT --guest NAME=QMPSOCK ... \
        --username U --password-file F [--cert C --key K]

Port 0 picks a free port. Once serving it prints `VET-BMC-READY redfish ADDRESS:PORT`
on stdout; SIGTERM stops it. Basic auth uses sushy's htpasswd-style file with a
bcrypt hash of the password; it and sushy's state live in a private temporary
directory removed on exit (cheap bcrypt rounds: this is a lab BMC on a loopback or
lab network).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import signal
import ssl
import sys
import tempfile
import threading
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
from sushy_tools import error as sushy_error  # type: ignore[import-untyped]
from sushy_tools.emulator import main as sushy_main  # type: ignore[import-untyped]
from sushy_tools.emulator.resources.systems.base import (  # type: ignore[import-untyped]
    AbstractSystemsDriver,
)
from werkzeug.serving import BaseWSGIServer, make_server

from harness.lab.bmc import READY, read_password
from harness.power.qmp import QmpError, QmpGuest

__all__ = ["QmpSystems", "main", "system_uuid"]

log = logging.getLogger(__name__)

#: System UUIDs derive from guest names, so URLs stay the same across restarts.
_UUID_NAMESPACE = uuid.UUID("6c0f4f57-2a4e-4c55-93a8-5d3a0a1f7e21")
#: The ResetTypes vet's lab implements, and what each does to the guest.
_RESETS = {
    "On": "power_on", "ForceOn": "power_on", "ForceOff": "power_off",
    "GracefulShutdown": "press_power_button", "GracefulRestart": "cycle",
    "ForceRestart": "cycle", "PowerCycle": "cycle",
}


def system_uuid(name: str) -> str:
    """The Redfish System UUID (and URL id) of the guest called `name`."""
    return str(uuid.uuid5(_UUID_NAMESPACE, name))


class QmpSystems(AbstractSystemsDriver):  # type: ignore[misc]
    """sushy-tools systems driver: each System is a lab guest behind its QMP socket."""

    def __init__(self, guests: dict[str, QmpGuest]) -> None:
        self._guests = {system_uuid(name): (name, guest) for name, guest in guests.items()}
        self._by_name = {name: system_uuid(name) for name in guests}
        self._boot: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def driver(self) -> str:
        return "<vet QMP systems>"

    @property
    def systems(self) -> list[str]:
        return sorted(self._guests)

    def _uuid(self, identity: str) -> str:
        if identity in self._guests:
            return identity
        if identity in self._by_name:
            # sushy answers 307 to the UUID URL, as a real BMC's canonical URL.
            raise sushy_error.AliasAccessError(self._by_name[identity])
        raise sushy_error.NotFound(f"no system {identity!r}; systems: "
                                   f"{', '.join(sorted(self._by_name))}")

    def uuid(self, identity: str) -> str:
        return self._uuid(identity)

    def name(self, identity: str) -> str:
        return self._guests[self._uuid(identity)][0]

    def _guest(self, identity: str) -> tuple[str, QmpGuest]:
        return self._guests[self._uuid(identity)]

    def get_power_state(self, identity: str) -> str:
        name, guest = self._guest(identity)
        try:
            return "On" if guest.is_on() else "Off"
        except QmpError as exc:
            raise sushy_error.FishyError(f"guest {name}: {exc}", code=503) from None

    def set_power_state(self, identity: str, state: str) -> None:
        name, guest = self._guest(identity)
        method = _RESETS.get(state)
        if method is None:
            raise sushy_error.BadRequest(f"ResetType {state!r} is not supported by the lab; "
                                         f"use one of: {', '.join(_RESETS)}")
        try:
            getattr(guest, method)()
        except QmpError as exc:
            raise sushy_error.FishyError(f"guest {name}: {exc}", code=503) from None
        print(f"redfish {name}: {state}", file=sys.stderr, flush=True)

    def get_boot_device(self, identity: str) -> str:
        with self._lock:
            return self._boot.get(self._uuid(identity), "Pxe")

    def set_boot_device(self, identity: str, boot_source: str) -> None:
        with self._lock:
            self._boot[self._uuid(identity)] = str(boot_source)
        print(f"redfish {self.name(identity)}: boot device {boot_source} (recorded only)",
              file=sys.stderr, flush=True)


class _VetApplication(sushy_main.Application):  # type: ignore[misc]
    """sushy's app with vet's systems driver instead of libvirt/nova/ironic/fake."""

    vet_systems: QmpSystems

    @property
    def systems(self) -> QmpSystems:
        return self.vet_systems


@contextlib.contextmanager
def _private_dir(username: str, password: str) -> Iterator[Path]:
    """A directory for sushy's user file (name:bcrypt-hash) and its state, removed after.

    sushy keeps state (indicator LEDs...) in SQLite files under /tmp/sushy-emulator
    by default, shared by every emulator on the machine; each service gets its own.
    """
    folder = Path(tempfile.mkdtemp(prefix="vet-redfish-"))
    try:
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        (folder / "htpasswd").write_text(f"{username}:{hashed}\n")
        (folder / "state").mkdir()
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def build_server(guests: dict[str, QmpGuest], *, address: str, port: int, private: Path,
                 cert: Path | None = None, key: Path | None = None) -> BaseWSGIServer:
    """Bind the emulator (HTTPS when a certificate is given); serve with serve_forever().

    `private` is a directory from `_private_dir` (user file and state).
    """
    app: Any = sushy_main.app
    app.__class__ = _VetApplication
    app.vet_systems = QmpSystems(guests)
    app.configure(extra_config={"SUSHY_EMULATOR_AUTH_FILE": str(private / "htpasswd"),
                                "SUSHY_EMULATOR_STATE_DIR": str(private / "state")})
    context = None
    if cert is not None and key is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
    return make_server(address, port, app, threaded=True, ssl_context=context)


def _guest_argument(text: str) -> tuple[str, str]:
    name, sep, socket_path = text.partition("=")
    if not sep or not name or not socket_path:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=QMPSOCKET")
    return name, socket_path


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.lab.redfish",
        description="Redfish service for the lab guests, driving them through QMP.")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0: pick a free one)")
    parser.add_argument("--guest", action="append", type=_guest_argument, required=True,
                        metavar="NAME=QMPSOCK", help="a guest and its QMP socket (repeat)")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password-file", required=True, type=Path,
                        help="file holding the password (first line)")
    parser.add_argument("--cert", type=Path, help="TLS certificate (PEM); HTTPS when given")
    parser.add_argument("--key", type=Path, help="TLS private key (PEM) for --cert")
    args = parser.parse_args(argv)
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together (HTTPS needs both)")
    names = [name for name, _ in args.guest]
    if len(set(names)) != len(names):
        parser.error(f"a guest is named twice in --guest: {', '.join(names)}")
    return args


def _stop(_signum: int, _frame: types.FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    password = read_password(args.password_file)
    signal.signal(signal.SIGTERM, _stop)
    guests = {name: QmpGuest(path, name=f"redfish-{name}") for name, path in args.guest}
    with _private_dir(args.username, password) as private:
        try:
            server = build_server(guests, address=args.address, port=args.port,
                                  private=private, cert=args.cert, key=args.key)
        except (OSError, ssl.SSLError) as exc:
            raise SystemExit(f"cannot serve Redfish on {args.address}:{args.port}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        shown = f"[{args.address}]" if ":" in args.address else args.address
        print(f"{READY} redfish {shown}:{server.server_port}", flush=True)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever()
        finally:
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
