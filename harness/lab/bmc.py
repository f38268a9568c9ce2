"""The lab's IPMI BMC: pyghmi's BMC server driving one guest through its own QMP socket.

pyghmi implements IPMI 2.0 over LAN (RMCP+) well enough for the real ipmitool
(`-I lanplus`); this subclass maps chassis control onto the lab guest's power semantics in
harness.power.qmp and, given power supplies (`--psu STATE`, once per bay), answers the
sensor repository commands pyghmi lacks (Get SDR Repository Info, Reserve SDR Repository,
Get SDR, Get Sensor Reading, Get Sensor Thresholds) from harness.lab.sdr, so `ipmitool
sdr elist` and `ipmitool sensor` show them. Boot devices are recorded, not acted on: lab
guests always network-boot first.

Run as a process:

    python -m harness.lab.bmc --name NAME --qmp SOCK --address 127.0.0.1 --port PORT \
        --username USER --password-file FILE [--psu ok --psu failed ...]

The password is read from a file, never from the command line. Port 0 picks a free
port. Once bound it prints `VET-BMC-READY ipmi ADDRESS:PORT` on stdout; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import struct
import sys
import types
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyghmi.ipmi.bmc as pyghmi_bmc  # type: ignore[import-untyped]

from harness.lab.sdr import PSU_STATES, SensorRepository, psu_repository
from harness.power.qmp import QmpError, QmpGuest

__all__ = ["READY", "QmpBmc", "main"]

READY = "VET-BMC-READY"
#: IPMI completion codes: "unspecified error", "invalid data length", "reservation cancelled",
#: "cannot return the number of bytes requested", "requested sensor/record not present".
_UNSPECIFIED = 0xFF
_INVALID_LENGTH = 0xC7
_RESERVATION_CANCELLED = 0xC5
_CANNOT_RETURN = 0xCA
_NOT_PRESENT = 0xCB
#: Network functions and commands of the sensor repository (IPMI 2.0 sections 33, 35).
NETFN_SENSOR, NETFN_STORAGE = 0x04, 0x0A
GET_SENSOR_THRESHOLDS, GET_SENSOR_READING = 0x27, 0x2D
GET_SDR_REPOSITORY_INFO, RESERVE_SDR_REPOSITORY, GET_SDR = 0x20, 0x22, 0x23

#: A stable per-name system GUID, so a restarted BMC answers the same.
_GUID_NAMESPACE = uuid.UUID("2f1b6a4e-5c1e-4d1f-9d49-7a7e6c5d0b01")


#: IPMI completion code "node busy": the client may try again (a QMP socket that is busy
#: or slow to answer on a loaded machine), unlike "unspecified error".
_NODE_BUSY = 0xC0


def _failure_code(exc: QmpError) -> int:
    return _NODE_BUSY if exc.transient else _UNSPECIFIED


class QmpBmc(pyghmi_bmc.Bmc):  # type: ignore[misc]
    """An IPMI BMC whose chassis is one lab guest, and with `psus` a sensor repository of
    those power supplies (harness.lab.sdr); without, it keeps none, like pyghmi's."""

    def __init__(self, *, name: str, guest: QmpGuest, username: str, password: str,
                 address: str, port: int, psus: Sequence[str] = ()) -> None:
        super().__init__({username: password}, port=port, address=address,
                         bmcuuid=uuid.uuid5(_GUID_NAMESPACE, name))
        self.name = name
        self.guest = guest
        self.boot_device = "default"
        self.sdr: SensorRepository | None = psu_repository(psus) if psus else None
        self.reservation = 0
        if self.sdr is not None:
            self.additionaldevices |= 0x02  # Get Device ID: "SDR repository device"
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

    def handle_raw_request(self, request: dict[str, Any], session: Any) -> None:
        """The sensor repository's commands; everything else as pyghmi answers it."""
        key = (request["netfn"], request["command"])
        if self.sdr is None or key not in _SDR_COMMANDS:
            super().handle_raw_request(request, session)
            return
        code, data = getattr(self, _SDR_COMMANDS[key])(self.sdr, bytes(request["data"]))
        session.send_ipmi_response(code=code, data=data)

    def sdr_repository_info(self, sdr: SensorRepository, _request: bytes) -> _Answer:
        count = len(sdr.sensors)
        # version, record count, free space 0, two timestamps 0, "Reserve SDR supported".
        return 0, [0x51, count & 0xFF, count >> 8, 0, 0, *([0] * 8), 0x02]

    def reserve_sdr_repository(self, _sdr: SensorRepository, _request: bytes) -> _Answer:
        self.reservation = self.reservation % 0xFFFF + 1
        return 0, [self.reservation & 0xFF, self.reservation >> 8]

    def get_sdr(self, sdr: SensorRepository, request: bytes) -> _Answer:
        if len(request) != 6:
            return _INVALID_LENGTH, []
        reservation, record_id, offset, count = struct.unpack("<HHBB", request)
        if offset and reservation != self.reservation:
            return _RESERVATION_CANCELLED, []
        found = sdr.record(record_id)
        if found is None:
            return _NOT_PRESENT, []
        record, following = found
        if offset >= len(record):
            return _CANNOT_RETURN, []
        part = record[offset:] if count == 0xFF else record[offset:offset + count]
        return 0, [following & 0xFF, following >> 8, *part]

    def get_sensor_reading(self, sdr: SensorRepository, request: bytes) -> _Answer:
        sensor = sdr.sensor(request[0]) if request else None
        return (_NOT_PRESENT, []) if sensor is None else (0, sensor.reading())

    def get_sensor_thresholds(self, sdr: SensorRepository, request: bytes) -> _Answer:
        sensor = sdr.sensor(request[0]) if request else None
        if sensor is None or not sensor.is_threshold:
            return _NOT_PRESENT, []
        return 0, sensor.threshold_answer()

    def get_system_guid(self) -> uuid.UUID:
        return uuid.uuid5(_GUID_NAMESPACE, self.name)

    def get_boot_device(self) -> str:
        return self.boot_device

    def set_boot_device(self, bootdevice: str) -> None:
        self.boot_device = str(bootdevice)
        print(f"bmc {self.name}: boot device {self.boot_device} (recorded only)",
              file=sys.stderr, flush=True)


_Answer = tuple[int, list[int]]
#: (netfn, command) -> the QmpBmc method answering it.
_SDR_COMMANDS = {
    (NETFN_STORAGE, GET_SDR_REPOSITORY_INFO): "sdr_repository_info",
    (NETFN_STORAGE, RESERVE_SDR_REPOSITORY): "reserve_sdr_repository",
    (NETFN_STORAGE, GET_SDR): "get_sdr",
    (NETFN_SENSOR, GET_SENSOR_READING): "get_sensor_reading",
    (NETFN_SENSOR, GET_SENSOR_THRESHOLDS): "get_sensor_thresholds",
}


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
    parser.add_argument("--psu", action="append", default=[], choices=PSU_STATES,
                        help="one power supply in its state, bay 1 first (repeat; none: no "
                             "sensor repository)")
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
                     port=args.port, psus=args.psu)
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
