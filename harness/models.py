"""Plain typed records shared by every part of vet.

They carry no behaviour beyond small conveniences, so the inventory loader, the
store, the stages and the report can agree on shapes without importing each other.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.StrEnum):
    """How much a finding matters: critical fails a stage, the others are reported."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class Verdict(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"


@dataclass(frozen=True)
class Connection:
    """How the controller reaches a booted host's shell."""

    kind: str  # "local" or "ssh"
    address: str | None = None
    user: str | None = None
    port: int | None = None
    key_file: str | None = None  # the controller's private key for this host
    host_key: str | None = None  # pinned host key fingerprint, "SHA256:..."
    #: Seconds of silence after which an SSH peer counts as dead (vet_ssh_dead_after_s).
    dead_after_s: float = 5.0


@dataclass(frozen=True)
class ConsoleLogin:
    """Who logs in on the serial console (the password may come from the vault)."""

    user: str = "root"
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PowerConfig:
    """A power driver name and its parameters (secrets stay in `secrets`)."""

    driver: str
    params: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ExpectedCpu:
    model: str | None = None
    sockets: int | None = None
    cores: int | None = None  # physical cores in total
    threads: int | None = None  # logical CPUs in total


@dataclass(frozen=True)
class ExpectedMemory:
    total_gib: float | None = None
    tolerance_pct: float = 5.0
    dimm_count: int | None = None
    dimm_size_gib: float | None = None


@dataclass(frozen=True)
class ExpectedDisk:
    serial: str
    model: str | None = None
    size_gb: float | None = None  # decimal gigabytes, as vendors label disks


@dataclass(frozen=True)
class ExpectedNic:
    mac: str
    speed_mbps: int | None = None


@dataclass(frozen=True)
class ExpectedGpu:
    model: str
    count: int = 1


@dataclass(frozen=True)
class ExpectedSpec:
    """What a host is supposed to be, as the operator wrote it in the inventory."""

    cpu: ExpectedCpu = field(default_factory=ExpectedCpu)
    memory: ExpectedMemory = field(default_factory=ExpectedMemory)
    disks: tuple[ExpectedDisk, ...] = ()
    nics: tuple[ExpectedNic, ...] = ()
    gpus: tuple[ExpectedGpu, ...] = ()
    psu_count: int | None = None
    bios_version: str | None = None
    bmc_version: str | None = None


@dataclass(frozen=True)
class PxeConfig:
    """The PXE server hosts boot from (`vet_pxe`): dnsmasq, TFTP and HTTP under `root`.

    `root` is absolute (the inventory resolves a relative one). `token_key_file` None
    means the default key file (harness.token.default_key_path); `token_key`, a
    vaulted secret, takes precedence over the file and stays out of repr.
    """

    server: str  # the IPv4 address hosts reach TFTP and HTTP on
    interface: str  # what dnsmasq binds
    dhcp_range: tuple[str, str]
    netmask: str = "255.255.255.0"
    http_port: int = 8080
    root: str = "/srv/vet-pxe"
    mode: str = "service"  # "service": systemd units; "lab": files only
    ipv6_ra: bool = True
    token_key_file: str | None = None
    token_key: str | None = field(default=None, repr=False)
    token_ttl_s: int = 86400


@dataclass(frozen=True)
class HoldPolicy:
    """What happens to a host that fails (`vet_hold_ttl_h`, `vet_release_power_off`).

    It stays booted and held for `ttl_h` hours (then `vet janitor` releases it); on
    release it is powered off unless `power_off` is False.
    """

    ttl_h: float = 24.0
    power_off: bool = True


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT broker live events go to (`vet_mqtt`); the password stays out of repr."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    topic_prefix: str = "vet"
    tls: bool = False
    ca_file: str | None = None  # None with tls: the system's CA store
    queue_size: int = 10000  # messages waiting for the sender; more are dropped and counted
    keepalive_s: int = 30


@dataclass(frozen=True)
class Host:
    """One server under test, typed from its Ansible inventory entry."""

    name: str
    connection: Connection
    macs: tuple[str, ...] = ()
    console: str | None = None
    console_login: ConsoleLogin = field(default_factory=ConsoleLogin)
    power: PowerConfig = field(default_factory=lambda: PowerConfig(driver="manual"))
    spec: ExpectedSpec = field(default_factory=ExpectedSpec)
    stage_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    profile_params: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    #: The virtual lab's raw `vet_lab` / `vet_lab_guest` variables (checked by harness.lab).
    lab: Mapping[str, Any] = field(default_factory=dict)
    #: Where the host PXE-boots from (`vet_pxe`); None: the host is not network-booted.
    pxe: PxeConfig | None = None
    #: Where live events are published (`vet_mqtt`); None: MQTT is off.
    mqtt: MqttConfig | None = None
    #: How long a failed host is held, and whether release powers it off.
    hold: HoldPolicy = field(default_factory=HoldPolicy)
    #: Where this host's notifications go (`vet_notify`, checked by harness.notify).
    notify: tuple[NotifyRoute, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class NotifyRoute:
    """One `vet_notify` target: which event kinds, from which severity, go to one apprise URL.

    The URL may hold a secret (webhook token, SMTP password): it stays out of repr and
    JSON; `label` (scheme://host, masked where apprise masks it) is what logs show.
    """

    url: str = field(repr=False)
    label: str
    kinds: frozenset[str]
    min_severity: Severity = Severity.INFO


@dataclass(frozen=True)
class CommandResult:
    """What one command on a host returned."""

    command: str
    exit_status: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass(frozen=True)
class SpecDifference:
    """One compared item of the spec; severity None means it matched."""

    item: str
    expected: str
    actual: str
    severity: Severity | None
    message: str


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float
    unit: str


@dataclass(frozen=True)
class CpuInfo:
    model: str | None
    sockets: int | None
    cores: int | None
    threads: int | None


@dataclass(frozen=True)
class DimmInfo:
    locator: str
    size_bytes: int
    type: str | None = None
    speed_mts: int | None = None
    manufacturer: str | None = None
    part_number: str | None = None
    serial: str | None = None


@dataclass(frozen=True)
class DiskInfo:
    name: str
    serial: str | None
    model: str | None
    size_bytes: int | None
    rotational: bool | None = None
    transport: str | None = None


@dataclass(frozen=True)
class NicInfo:
    name: str
    mac: str | None
    speed_mbps: int | None = None
    driver: str | None = None


@dataclass(frozen=True)
class GpuInfo:
    model: str
    pci_slot: str | None = None


@dataclass(frozen=True)
class HardwareInventory:
    """What a host actually is, merged from lshw, dmidecode, lsblk and lspci."""

    system_vendor: str | None = None
    system_product: str | None = None
    system_serial: str | None = None
    bios_version: str | None = None
    cpu: CpuInfo = field(default_factory=lambda: CpuInfo(None, None, None, None))
    memory_total_bytes: int | None = None
    dimms: tuple[DimmInfo, ...] = ()
    disks: tuple[DiskInfo, ...] = ()
    nics: tuple[NicInfo, ...] = ()
    gpus: tuple[GpuInfo, ...] = ()
    psu_count: int | None = None


def to_jsonable(value: Any) -> Any:
    """Turn records (dataclasses, enums, tuples, mappings) into JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.repr}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value
