"""`vet lab up|down|status`: bring the virtual lab up from an inventory, and take it
all away again.

Every step is written to state.json as it happens, so `vet lab down` after a crash (or a
failed `up`) still finds every process, namespace and interface it has to remove.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.errors import VetError
from harness.lab import network
from harness.lab.daemon import LabError, cmdline_of, run_daemonizing, spawn_ready, stop_process
from harness.lab.qemu import check_tools, choose_accel, guest_argv, make_disks, qmp_users
from harness.lab.smbios import write_power_supplies
from harness.lab.spec import GuestSpec, LabSpec
from harness.models import Host

Progress = Callable[[str], None]
STATE = "state.json"
BMC_READY = "VET-BMC-READY"
HTTP_READY = "VET-HTTP-READY"


@dataclass
class LabState:
    """What `up` started, persisted as it goes."""

    netns: str
    veth_host: str
    accel: str = ""
    accel_why: str = ""
    started_at: float = field(default_factory=time.time)
    #: Each started process: what it is, its pid, and a string its command line carries.
    processes: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _state_path(lab: LabSpec) -> Path:
    return lab.state_dir / STATE


def read_state(lab: LabSpec) -> LabState | None:
    try:
        raw = json.loads(_state_path(lab).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"lab state {_state_path(lab)} is unreadable ({exc}); remove it and "
                       f"run vet lab down again") from None
    return LabState(**raw)


def _save(lab: LabSpec, state: LabState) -> None:
    path = _state_path(lab)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2))
    os.replace(tmp, path)


def _secret_file(lab: LabSpec, name: str, value: str) -> Path:
    """A password the BMC reads from a file (0600), never from its command line."""
    folder = lab.state_dir / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return path


def _port_free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno != errno.EADDRINUSE
    return True


def _busy_ports(lab: LabSpec) -> list[str]:
    busy = []
    for guest in lab.guests:
        if not _port_free(guest.console_port, socket.SOCK_STREAM):
            busy.append(f"{guest.name}'s console port {guest.console_port}/tcp")
        params = guest.power.params
        if guest.power.driver == "ipmi" and not _port_free(int(params.get("port", 623)),
                                                            socket.SOCK_DGRAM):
            busy.append(f"{guest.name}'s IPMI port {params.get('port', 623)}/udp")
    for port in {_redfish_port(g) for g in lab.guests if g.power.driver == "redfish"}:
        if not _port_free(port, socket.SOCK_STREAM):
            busy.append(f"the Redfish port {port}/tcp")
    return busy


def _redfish_port(guest: GuestSpec) -> int:
    parts = urlsplit(str(guest.power.params["url"]))
    return parts.port or (443 if parts.scheme == "https" else 80)


class Lab:
    """One lab, described by the inventory's lab guests."""

    def __init__(self, spec: LabSpec, hosts: Sequence[Host],
                 progress: Progress | None = None) -> None:
        self.spec = spec
        self.hosts = [h for h in hosts if h.name in {g.name for g in spec.guests}]
        self.progress = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.logs = spec.state_dir / "logs"

    # ------------------------------------------------------------------ up

    def up(self, image_dir: Path) -> LabState:
        """Namespace, bridge, veth, dnsmasq, HTTP, guests (paused = powered off), BMCs."""
        spec = self.spec
        check_tools()
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, taps); run vet lab up "
                           "as root")
        existing = read_state(spec)
        if existing is not None or network.netns_exists(spec.netns):
            raise LabError(f"the lab {spec.netns} is already up (state in {spec.state_dir}); "
                           "`vet lab status` shows it, `vet lab down` removes it")
        conflicts = network.conflicting_routes(spec.network, spec.veth_host)
        if conflicts:
            raise LabError(f"the lab network {spec.network} overlaps routes on this machine "
                           f"({', '.join(conflicts)}); give the lab another subnet in "
                           "vet_pxe.server / vet_pxe.dhcp_range and the guests' ansible_host")
        busy = _busy_ports(spec)
        if busy:
            raise LabError(f"ports the lab needs are in use: {', '.join(busy)}; free them or "
                           "change the ports in the lab inventory")
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        state = LabState(netns=spec.netns, veth_host=spec.veth_host)
        _save(spec, state)
        try:
            self._up(state, image_dir)
        except BaseException:
            self.progress("lab up failed; removing what was started")
            with contextlib.suppress(VetError):
                self.down()
            raise
        state.complete = True
        _save(spec, state)
        return state

    def _started(self, state: LabState, what: str, pid: int, marker: str) -> None:
        state.processes.append({"what": what, "pid": pid, "marker": marker})
        _save(self.spec, state)

    def _up(self, state: LabState, image_dir: Path) -> None:
        from harness.provision import setup_pxe_server  # ansible is slow to import

        spec = self.spec
        state.accel, state.accel_why = choose_accel(spec.accel, _cache_dir())
        self.progress(f"accelerator: {state.accel_why}")
        self.progress(f"network: namespace {spec.netns}, bridge {spec.bridge} "
                      f"{spec.server_ip}/{spec.prefix_len}, controller {spec.controller_ip}")
        network.create(spec.netns, spec.bridge, f"{spec.server_ip}/{spec.prefix_len}",
                       spec.veth_host, spec.veth_lab, f"{spec.controller_ip}/{spec.prefix_len}",
                       network.RA_ADDRESS if spec.pxe.ipv6_ra else None)
        self.progress("PXE server files (pxe_server.yml)")
        setup_pxe_server(spec.pxe, self.hosts, image_dir,
                         on_event=lambda event: None)
        root = Path(spec.pxe.root)
        conf = root / "dnsmasq.conf"
        pid_file = _conf_value(conf, "pid-file") or root / "dnsmasq.pid"
        pid = run_daemonizing(network.ns_argv(spec.netns, ["dnsmasq", "-C", str(conf)]),
                              what="dnsmasq", log=self.logs / "dnsmasq-start.log",
                              pid_file=Path(pid_file))
        self._started(state, "dnsmasq", pid, str(conf))
        self.progress(f"dnsmasq serving DHCP/TFTP on {spec.bridge} (pid {pid})")
        http_root = root / "http"
        pid = spawn_ready(
            network.ns_argv(spec.netns, [sys.executable, "-m", "harness.lab.http",
                                         "--address", spec.server_ip,
                                         "--port", str(spec.pxe.http_port),
                                         "--root", str(http_root)]),
            what="the lab HTTP server", log=self.logs / "http.log", ready_prefix=HTTP_READY,
            env=_python_env())
        self._started(state, "http", pid, str(http_root))
        self.progress(f"HTTP on http://{spec.server_ip}:{spec.pxe.http_port}/ (pid {pid})")
        for index, guest in enumerate(spec.guests):
            self._start_guest(state, index, guest)
        self._start_bmcs(state)

    def add_guest(self, guest: GuestSpec) -> int:
        """Start one more guest on the running lab that the inventory does not list (a
        stranger: its MAC is not allowlisted). Returns its index; `down` removes it too."""
        state = read_state(self.spec)
        if state is None or not state.complete:
            raise LabError(f"the lab {self.spec.netns} is not up")
        index = sum(str(proc["what"]).startswith("qemu ") for proc in state.processes)
        self._start_guest(state, index, guest)
        return index

    def _start_guest(self, state: LabState, index: int, guest: GuestSpec) -> None:
        spec = self.spec
        gdir = spec.guest_dir(guest.name)
        gdir.mkdir(parents=True, exist_ok=True)
        for user in qmp_users(guest):
            sock = spec.qmp_socket(guest, user)
            sock.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
        make_disks(spec, guest)
        write_power_supplies(gdir, guest.psus)
        argv = guest_argv(spec, guest, index, state.accel)
        (gdir / "qemu.argv").write_text(json.dumps(argv))
        pid = run_daemonizing(argv, what=f"QEMU for {guest.name}",
                              log=self.logs / f"qemu-{guest.name}.log",
                              pid_file=gdir / "qemu.pid")
        self._started(state, f"qemu {guest.name}", pid, str(gdir))
        network.attach_tap(spec.netns, spec.bridge, spec.tap(index))
        disks = ", ".join(f"{d.bus}:{d.serial}" + (" (I/O errors)" if d.io_errors else "")
                          for d in guest.disks) or "no disks"
        self.progress(f"guest {guest.name}: {guest.mac}, {guest.memory_mib} MiB, "
                      f"{guest.cpus} CPU, {disks}; console socket://127.0.0.1:"
                      f"{guest.console_port}; powered off (pid {pid})")

    def _start_bmcs(self, state: LabState) -> None:
        spec = self.spec
        redfish: list[GuestSpec] = []
        for guest in spec.guests:
            power = guest.power
            if power.driver == "ipmi":
                address = str(power.params["address"])
                port = int(power.params.get("port", 623))
                secret = _secret_file(spec, f"{guest.name}-ipmi", power.secrets["password"])
                pid = spawn_ready(
                    [sys.executable, "-m", "harness.lab.bmc", "--name", guest.name,
                     "--qmp", str(spec.qmp_socket(guest, "ipmi")), "--address", address,
                     "--port", str(port), "--username", str(power.params["username"]),
                     "--password-file", str(secret),
                     *(arg for state in guest.psus for arg in ("--psu", state))],
                    what=f"the IPMI BMC of {guest.name}",
                    log=self.logs / f"bmc-{guest.name}.log", ready_prefix=BMC_READY,
                    env=_python_env())
                self._started(state, f"ipmi-bmc {guest.name}", pid,
                              str(spec.qmp_socket(guest, "ipmi")))
                self.progress(f"guest {guest.name}: IPMI BMC on {address}:{port} (pid {pid})")
            elif power.driver == "redfish":
                redfish.append(guest)
        if redfish:
            self._start_redfish(state, redfish)

    def _start_redfish(self, state: LabState, guests: list[GuestSpec]) -> None:
        spec = self.spec
        first = guests[0].power
        parts = urlsplit(str(first.params["url"]))
        folder = spec.state_dir / "redfish"
        folder.mkdir(exist_ok=True)
        argv = [sys.executable, "-m", "harness.lab.redfish", "--address",
                parts.hostname or "127.0.0.1", "--port", str(_redfish_port(guests[0])),
                "--username", str(first.params["username"]),
                "--password-file", str(_secret_file(spec, "redfish",
                                                    first.secrets["password"]))]
        if parts.scheme == "https":
            cert, key = _self_signed(folder, parts.hostname or "127.0.0.1")
            argv += ["--cert", str(cert), "--key", str(key)]
        for guest in guests:
            argv += ["--guest", f"{guest.name}={spec.qmp_socket(guest, 'redfish')}"]
        pid = spawn_ready(argv, what="the lab Redfish service", log=self.logs / "redfish.log",
                          ready_prefix=BMC_READY, env=_python_env())
        self._started(state, "redfish", pid, str(folder))
        self.progress(f"Redfish service on {parts.scheme}://{parts.netloc} for "
                      f"{', '.join(g.name for g in guests)} (pid {pid})")

    # ------------------------------------------------------------------ down

    def down(self) -> list[str]:
        """Stop everything, remove the namespace and interfaces; returns what was left
        (empty when the lab is gone). Logs stay under the state directory's logs/."""
        spec = self.spec
        state = read_state(spec)
        left: list[str] = []
        if state is not None:
            for proc in reversed(state.processes):
                try:
                    stop_process(int(proc["pid"]), what=str(proc["what"]),
                                 marker=str(proc["marker"]))
                except VetError as exc:
                    left.append(str(exc))
        # Strays: anything still running from this lab's directory or in its namespace.
        for pid in _pids_mentioning(str(spec.state_dir)):
            stop_process(pid, what=f"stray lab process {pid}", marker=str(spec.state_dir))
        if network.netns_exists(spec.netns):
            for stray in network.ip("netns", "pids", spec.netns, check=False).stdout.split():
                stop_process(int(stray), what=f"process {stray} in {spec.netns}")
        left += network.destroy(spec.netns, spec.veth_host)
        for guest in spec.guests:
            for user in ("power", "ipmi", "redfish", "lab"):
                with contextlib.suppress(FileNotFoundError):
                    spec.qmp_socket(guest, user).unlink()
        for name in ("guests", "secrets", "redfish"):
            shutil.rmtree(spec.state_dir / name, ignore_errors=True)
        pxe_root = Path(spec.pxe.root)
        if pxe_root.is_relative_to(spec.state_dir):
            shutil.rmtree(pxe_root, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            _state_path(spec).unlink()
        return left

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """Whether the lab is up, each process alive, each guest's power state."""
        from harness.power.qmp import OFF_STATES, QmpError, QmpGuest

        spec = self.spec
        state = read_state(spec)
        result: dict[str, Any] = {
            "netns": spec.netns, "up": state is not None and network.netns_exists(spec.netns),
            "complete": bool(state and state.complete), "state_dir": str(spec.state_dir),
            "accel": state.accel_why if state else None,
            "network": str(spec.network), "controller": spec.controller_ip,
            "processes": [], "guests": [],
        }
        if state is not None:
            result["started"] = datetime.datetime.fromtimestamp(state.started_at).isoformat(
                timespec="seconds")
            for proc in state.processes:
                alive = str(proc["marker"]) in cmdline_of(int(proc["pid"]))
                result["processes"].append({"what": proc["what"], "pid": proc["pid"],
                                            "running": alive})
        for guest in spec.guests:
            power = "absent"
            if state is not None:
                try:
                    run_state = QmpGuest(spec.qmp_socket(guest, "lab"), timeout_s=5.0).run_state()
                    power = f"{'off' if run_state in OFF_STATES else 'on'} ({run_state})"
                except QmpError as exc:
                    power = f"unknown ({exc})"
            result["guests"].append({
                "name": guest.name, "mac": guest.mac, "ip": guest.ip, "power": power,
                "console": f"socket://127.0.0.1:{guest.console_port}",
                "power_driver": guest.power.driver})
        return result


def _conf_value(conf: Path, key: str) -> str | None:
    for line in conf.read_text().splitlines():
        name, _, value = line.strip().partition("=")
        if name == key and value:
            return value
    return None


def _pids_mentioning(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() \
                and marker in cmdline_of(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _python_env() -> dict[str, str]:
    """The daemons import harness: make the project importable whatever the cwd."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _cache_dir() -> Path:
    from harness.image import default_cache_dir
    return default_cache_dir()


def _self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for the lab's Redfish service (the lab is not a PKI)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vet lab Redfish")])
    now = datetime.datetime.now(datetime.UTC)
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_path, key_path
