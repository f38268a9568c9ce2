"""What the lab is made of, read from the inventory (inventory/virtual/ by default).

The inventory stays the one description of every host: the lab builds each guest from
the same variables the stages and power drivers read (vet_macs, vet_console, vet_power,
vet_pxe, ansible_host) plus the guest's hardware in `vet_lab_guest`, and the network
from `vet_lab` and `vet_pxe`. Every problem is reported at once, each naming the host
and the variable.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.errors import InventoryError
from harness.lab.sdr import PSU_STATES
from harness.models import Host, PowerConfig, PxeConfig

BUSES = ("nvme", "sata", "scsi", "virtio")
ACCELS = ("auto", "tcg", "kvm")
IO_EVENTS = ("read_aio", "write_aio", "flush_to_disk")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}")
_SERIAL = re.compile(r"[A-Za-z0-9_.-]{1,20}")
_GUEST_KEYS = ("memory_mib", "cpus", "disks", "smbios", "psu")
MAX_PSUS = 8
_DISK_KEYS = ("bus", "serial", "model", "size_gib", "io_errors")
_LAB_KEYS = ("netns", "controller_address", "state_dir", "accel")
_SMBIOS_KEYS = ("manufacturer", "product", "version", "serial", "uuid", "sku", "family")
#: A unix socket path must fit in sun_path (108 bytes with the NUL).
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class IoErrorRule:
    """One blkdebug rule: this kind of request at this sector fails with errno."""

    event: str
    sector: int
    errno: int = 5


@dataclass(frozen=True)
class DiskSpec:
    bus: str
    serial: str
    size_gib: float = 1.0
    model: str | None = None
    io_errors: tuple[IoErrorRule, ...] = ()


@dataclass(frozen=True)
class GuestSpec:
    """One lab guest: the inventory host it is, and the hardware it gets."""

    name: str
    mac: str
    ip: str | None
    console_port: int
    power: PowerConfig
    memory_mib: int = 512
    cpus: int = 2
    disks: tuple[DiskSpec, ...] = ()
    smbios: Mapping[str, str] = field(default_factory=dict)
    #: Power supplies by bay, each one of harness.lab.sdr.PSU_STATES: the IPMI BMC's
    #: sensors and the guest's SMBIOS type 39 records. Empty: no PSU, no sensor repository.
    psus: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabSpec:
    """The lab: one namespace and bridge, the PXE server in it, the guests on it."""

    netns: str
    bridge: str
    server_ip: str
    prefix_len: int
    controller_ip: str
    state_dir: Path
    accel: str
    pxe: PxeConfig
    guests: tuple[GuestSpec, ...]

    @property
    def short(self) -> str:
        """A short tag of the namespace name for interface names (15 characters at most)."""
        return hashlib.sha1(self.netns.encode()).hexdigest()[:5]

    @property
    def veth_host(self) -> str:
        return f"vl{self.short}"

    @property
    def veth_lab(self) -> str:
        return f"vl{self.short}p"

    def tap(self, index: int) -> str:
        return f"vt{self.short}{index}"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.server_ip}/{self.prefix_len}", strict=False)

    def guest_dir(self, name: str) -> Path:
        return self.state_dir / "guests" / name

    def qmp_socket(self, guest: GuestSpec, user: str) -> Path:
        """Each QMP user (power driver, IPMI BMC, Redfish, the lab) gets its own socket:
        a QMP socket serves one client at a time."""
        if user == "power" and guest.power.driver == "qemu":
            return Path(str(guest.power.params["qmp"])).absolute()
        return self.guest_dir(guest.name) / f"qmp-{user}.sock"


def _problem(problems: list[str], host: str, text: str) -> None:
    problems.append(f"host {host}: {text}")


def _int(problems: list[str], host: str, path: str, value: Any, lo: int, hi: int,
         default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        _problem(problems, host, f"{path} {value!r} is not a whole number from {lo} to {hi}")
        return default
    return int(value)


def _disk(problems: list[str], host: str, path: str, raw: Any) -> DiskSpec | None:
    if not isinstance(raw, Mapping):
        _problem(problems, host, f"{path} is not a mapping; write e.g. "
                                 "{bus: nvme, serial: VM-NVME-0, size_gib: 1}")
        return None
    unknown = sorted(set(raw) - set(_DISK_KEYS))
    if unknown:
        _problem(problems, host, f"{path} has unknown keys {unknown}; allowed: "
                                 f"{', '.join(_DISK_KEYS)}")
    bus, serial = raw.get("bus"), raw.get("serial")
    if bus not in BUSES:
        _problem(problems, host, f"{path}.bus {bus!r} is not one of {', '.join(BUSES)}")
        return None
    if not isinstance(serial, str) or not _SERIAL.fullmatch(serial):
        _problem(problems, host, f"{path}.serial {serial!r} must be 1-20 letters, digits, "
                                 "'-', '_' or '.' (NVMe and ATA serials are 20 bytes)")
        return None
    size = raw.get("size_gib", 1.0)
    if isinstance(size, bool) or not isinstance(size, int | float) or not 0.01 <= size <= 64:
        _problem(problems, host, f"{path}.size_gib {size!r} must be a number from 0.01 to 64")
        size = 1.0
    model = raw.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()
                              or len(model) > 40 or "," in model):
        _problem(problems, host, f"{path}.model {model!r} must be text of at most 40 "
                                 "characters without commas")
        model = None
    rules = []
    for n, rule in enumerate(raw.get("io_errors") or ()):
        where = f"{path}.io_errors[{n}]"
        if not isinstance(rule, Mapping) or rule.get("event") not in IO_EVENTS:
            _problem(problems, host, f"{where} needs event: one of {', '.join(IO_EVENTS)} "
                                     "(e.g. {event: read_aio, sector: 2048})")
            continue
        sector = _int(problems, host, f"{where}.sector", rule.get("sector", 0), 0, 2**40, 0)
        errno = _int(problems, host, f"{where}.errno", rule.get("errno", 5), 1, 133, 5)
        rules.append(IoErrorRule(str(rule["event"]), sector, errno))
    return DiskSpec(str(bus), serial, float(size), model, tuple(rules))


def _psus(problems: list[str], host: Host, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if (isinstance(raw, str) or not isinstance(raw, Sequence) or not 1 <= len(raw) <= MAX_PSUS
            or any(state not in PSU_STATES for state in raw)):
        _problem(problems, host.name, f"vet_lab_guest.psu {raw!r} must list 1 to {MAX_PSUS} "
                                      f"power supplies, each one of {', '.join(PSU_STATES)} "
                                      "(e.g. psu: [ok, failed])")
        return ()
    if host.power.driver != "ipmi":
        _problem(problems, host.name, "vet_lab_guest.psu: the PSU sensors are served by the "
                                      "lab's IPMI BMC; set vet_power.driver: ipmi or drop psu")
        return ()
    return tuple(str(state) for state in raw)


def _console_port(problems: list[str], host: Host) -> int:
    url = host.console or ""
    parts = urlsplit(url)
    if parts.scheme != "socket" or parts.hostname not in ("127.0.0.1", "localhost") \
            or parts.port is None:
        _problem(problems, host.name, f"vet_console {url!r}: a lab guest's console is QEMU's "
                                      "serial port on loopback; write vet_console: "
                                      "socket://127.0.0.1:47011")
        return 0
    return parts.port


def _guest(problems: list[str], host: Host) -> GuestSpec:
    raw = host.lab.get("guest") or {}
    if not isinstance(raw, Mapping):
        _problem(problems, host.name, "vet_lab_guest is not a mapping; write e.g. "
                                      "{memory_mib: 512, cpus: 2, disks: [...]}")
        raw = {}
    unknown = sorted(set(raw) - set(_GUEST_KEYS))
    if unknown:
        _problem(problems, host.name, f"vet_lab_guest has unknown keys {unknown}; allowed: "
                                      f"{', '.join(_GUEST_KEYS)}")
    if not host.macs:
        _problem(problems, host.name, "has no vet_macs; a lab guest boots from its first MAC")
    if host.power.driver not in ("qemu", "ipmi", "redfish"):
        _problem(problems, host.name, f"vet_power.driver {host.power.driver!r}: the lab can "
                                      "power guests by qemu (QMP), ipmi or redfish")
    disks: list[DiskSpec] = []
    raw_disks = raw.get("disks") or []
    if not isinstance(raw_disks, Sequence) or isinstance(raw_disks, str):
        _problem(problems, host.name, "vet_lab_guest.disks is not a list")
        raw_disks = []
    for n, item in enumerate(raw_disks):
        disk = _disk(problems, host.name, f"vet_lab_guest.disks[{n}]", item)
        if disk is not None:
            disks.append(disk)
    serials = [d.serial for d in disks]
    for serial in sorted({s for s in serials if serials.count(s) > 1}):
        _problem(problems, host.name, f"vet_lab_guest.disks: serial {serial} is used twice")
    smbios = raw.get("smbios") or {}
    if not isinstance(smbios, Mapping) or set(smbios) - set(_SMBIOS_KEYS) or any(
            not isinstance(v, str) or "," in v for v in smbios.values()):
        _problem(problems, host.name, f"vet_lab_guest.smbios must map some of "
                                      f"{', '.join(_SMBIOS_KEYS)} to text without commas")
        smbios = {}
    ip = host.connection.address
    if ip is not None:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            _problem(problems, host.name, f"ansible_host {ip!r} must be the guest's IPv4 "
                                          "address on the lab bridge (its fixed DHCP lease)")
            ip = None
    return GuestSpec(
        name=host.name, mac=host.macs[0] if host.macs else "", ip=ip,
        console_port=_console_port(problems, host), power=host.power,
        memory_mib=_int(problems, host.name, "vet_lab_guest.memory_mib",
                        raw.get("memory_mib"), 128, 16384, 512),
        cpus=_int(problems, host.name, "vet_lab_guest.cpus", raw.get("cpus"), 1, 8, 2),
        disks=tuple(disks), smbios={str(k): str(v) for k, v in smbios.items()},
        psus=_psus(problems, host, raw.get("psu")))


def lab_spec(hosts: Sequence[Host], label: str = "inventory") -> LabSpec:
    """The lab the inventory describes; InventoryError lists every problem found."""
    problems: list[str] = []
    guests = [h for h in hosts if h.lab.get("guest") is not None]
    if not guests:
        raise InventoryError(f"{label}: no host has vet_lab_guest; the lab builds a guest for "
                             "each host that has one (see inventory/virtual/)")
    first = guests[0]
    lab_vars = first.lab.get("lab") or {}
    pxe = first.pxe
    for host in guests[1:]:
        if (host.lab.get("lab") or {}) != lab_vars or host.pxe != pxe:
            problems.append(f"host {host.name}: vet_lab and vet_pxe must be the same for every "
                            "lab guest (set them on the group, not per host)")
    if pxe is None:
        raise InventoryError(f"{label}: the lab guests have no vet_pxe; the lab serves them "
                             "from the PXE server it describes (see inventory/virtual/)")
    if pxe.mode != "lab":
        problems.append(f"vet_pxe.mode is {pxe.mode!r}; the lab runs dnsmasq itself: set "
                        "vet_pxe.mode: lab")
    if not isinstance(lab_vars, Mapping):
        raise InventoryError(f"{label}: vet_lab is not a mapping; write e.g. "
                             "{netns: vet-lab, controller_address: 10.77.0.254}")
    unknown = sorted(set(lab_vars) - set(_LAB_KEYS))
    if unknown:
        problems.append(f"vet_lab has unknown keys {unknown}; allowed: {', '.join(_LAB_KEYS)}")
    netns = lab_vars.get("netns", "vet-lab")
    if not isinstance(netns, str) or not _NAME.fullmatch(netns):
        problems.append(f"vet_lab.netns {netns!r} is not a usable namespace name "
                        "(letters, digits, '-', '_', '.'; up to 31)")
        netns = "vet-lab"
    accel = lab_vars.get("accel", "auto")
    if accel not in ACCELS:
        problems.append(f"vet_lab.accel {accel!r} is not one of {', '.join(ACCELS)}")
        accel = "auto"
    try:
        network = ipaddress.IPv4Network(f"{pxe.server}/{pxe.netmask}", strict=False)
    except ValueError:
        raise InventoryError(f"{label}: vet_pxe.server {pxe.server!r} / netmask "
                             f"{pxe.netmask!r} is not an IPv4 network") from None
    controller = str(lab_vars.get("controller_address", network[-2]))
    try:
        if ipaddress.IPv4Address(controller) not in network or controller == pxe.server:
            raise ValueError
    except ValueError:
        problems.append(f"vet_lab.controller_address {controller!r} must be another address "
                        f"in {network} (the controller's end of the lab link)")
    state_dir = Path(str(lab_vars.get("state_dir", "reports/lab"))).absolute()
    specs = tuple(_guest(problems, h) for h in guests)
    for attr, what in (("mac", "MAC"), ("console_port", "console port"), ("ip", "address")):
        values = [getattr(g, attr) for g in specs if getattr(g, attr)]
        for value in sorted({v for v in values if values.count(v) > 1}, key=str):
            problems.append(f"two lab guests share the {what} {value}")
    for guest in specs:
        if guest.ip is not None and ipaddress.IPv4Address(guest.ip) not in network:
            problems.append(f"host {guest.name}: ansible_host {guest.ip} is outside the lab "
                            f"network {network}")
    spec = LabSpec(netns=netns, bridge=pxe.interface, server_ip=pxe.server,
                   prefix_len=network.prefixlen, controller_ip=controller, state_dir=state_dir,
                   accel=str(accel), pxe=pxe, guests=specs)
    for guest in specs:
        for user in ("power", "ipmi", "redfish", "lab"):
            if len(str(spec.qmp_socket(guest, user))) > MAX_SOCKET_PATH:
                problems.append(f"host {guest.name}: QMP socket path "
                                f"{spec.qmp_socket(guest, user)} is longer than a unix socket "
                                "allows; use a shorter vet_lab.state_dir")
                break
    if problems:
        raise InventoryError([f"{label}: {p}" for p in problems])
    return spec
