"""The lab's IPMI BMC: pyghmi's BMC server driving one guest through its own QMP socket.

pyghmi implements IPMI 2.0 over LAN (RMCP+) well enough for the real ipmitool
(`-I lanplus`); this subclass only maps chassis control onto the lab guest's power
semantics in harness.power.qmp. Boot devices are recorded, not acted on: lab guests
always network-boot first.

Run as a process:

    python -m harness.lab.bmc --name NAME --qmp SOCK --address 127.0.0.1 --port PORT \
        --username USER --password-file FILE

The password is read from a file, never from the command line. Port 0 picks a free
port. Once bound it prints `VET-BMC-READY ipmi ADDRESS:PORT` on stdout; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import types
import uuid
from pathlib import Path
from typing import Any

import pyghmi.ipmi.bmc as pyghmi_bmc  # type: ignore[import-untyped]

from harness.power.qmp import QmpError, QmpGuest

__all__ = ["READY", "QmpBmc", "main"]

READY = "VET-BMC-READY"
#: IPMI completion codes: "unspecified error" and "not supported in present state".
_UNSPECIFIED = 0xFF

#: A stable per-name system GUID, so a restarted BMC answers the same.
_GUID_NAMESPACE = uuid.UUID("2f1b6a4e-5c1e-4d1f-9d49-7a7e6c5d0b01")


#: IPMI completion code "node busy": the client may try again (a QMP socket that is busy
#: or slow to answer on a loaded machine), unlike "unspecified error".
_NODE_BUSY = 0xC0


def _failure_code(exc: QmpError) -> int:
    return _NODE_BUSY if exc.transient else _UNSPECIFIED


class QmpBmc(pyghmi_bmc.Bmc):  # type: ignore[misc]
    """An IPMI BMC whose chassis is one lab guest."""

    def __init__(self, *, name: str, guest: QmpGuest, username: str, password: str,
                 address: str, port: int) -> None:
        super().__init__({username: password}, port=port, address=address,
                         bmcuuid=uuid.uuid5(_GUID_NAMESPACE, name))
        self.name = name
        self.guest = guest
        self.boot_device = "default"
        # With port 0 the kernel chose one; pyghmi also announces it for SOL.
        self.port = int(self.serversocket.getsockname()[1])

    def _power(self, what: str, action: Any) -> int | None:
        try:
            action()
        except QmpError as exc:
            print(f"bmc {self.name}: {what} failed: {exc}", file=sys.stderr, flush=True)
            return _failure_code(exc)
        print(f"bmc {self.name}: {what}", file=sys.stderr, flush=True)
        return None

    def get_power_state(self) -> str:
        return "on" if self.guest.is_on() else "off"

    def get_chassis_status(self, session: Any) -> None:
        try:
            super().get_chassis_status(session)
        except QmpError as exc:
            print(f"bmc {self.name}: chassis status failed: {exc}", file=sys.stderr, flush=True)
            session.send_ipmi_response(code=_failure_code(exc))

    def power_on(self) -> int | None:
        return self._power("power on", self.guest.power_on)

    def power_off(self) -> int | None:
        return self._power("power off", self.guest.power_off)

    def power_shutdown(self) -> int | None:
        # Like a real BMC: press the ACPI button and answer at once; the OS decides.
        return self._power("soft off (ACPI power button)", self.guest.press_power_button)

    def power_reset(self) -> int | None:
        return self._power("reset", self.guest.cycle)

    def power_cycle(self) -> int | None:
        return self._power("power cycle", self.guest.cycle)

    def get_system_guid(self) -> uuid.UUID:
        return uuid.uuid5(_GUID_NAMESPACE, self.name)

    def get_boot_device(self) -> str:
        return self.boot_device

    def set_boot_device(self, bootdevice: str) -> None:
        self.boot_device = str(bootdevice)
        print(f"bmc {self.name}: boot device {self.boot_device} (recorded only)",
              file=sys.stderr, flush=True)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.lab.bmc",
        description="IPMI BMC for one lab guest, driving it through its QMP socket.")
    parser.add_argument("--name", required=True, help="the guest's name")
    parser.add_argument("--qmp", required=True, help="the guest's QMP socket for this BMC")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (UDP)")
    parser.add_argument("--port", type=int, default=623, help="UDP port (0: pick a free one)")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password-file", required=True, type=Path,
                        help="file holding the password (first line)")
    return parser.parse_args(argv)


def read_password(path: Path) -> str:
    """The first line of `path`; exits with a clear message if it cannot."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SystemExit(f"cannot read the password file {path}: {exc.strerror}") from None
    if not lines or not lines[0]:
        raise SystemExit(f"the password file {path} is empty; write the password in it")
    return lines[0]


def _stop(_signum: int, _frame: types.FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    password = read_password(args.password_file)
    signal.signal(signal.SIGTERM, _stop)
    try:
        bmc = QmpBmc(name=args.name, guest=QmpGuest(args.qmp, name=f"bmc-{args.name}"),
                     username=args.username, password=password, address=args.address,
                     port=args.port)
    except OSError as exc:
        raise SystemExit(f"cannot listen on {args.address}:{args.port}/udp: "
                         f"{exc.strerror}") from None
    shown = f"[{args.address}]" if ":" in args.address else args.address
    print(f"{READY} ipmi {shown}:{bmc.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        bmc.listen(timeout=30)  # with None pyghmi's loop would spin without waiting
    return 0


if __name__ == "__main__":
    sys.exit(main())
