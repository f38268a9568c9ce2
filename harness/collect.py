"""Collect a host's hardware inventory and merge the tools' views into one record.

Each field comes from the source that knows it best: lscpu for CPU topology (the
kernel's view), dmidecode for DIMMs, BIOS and PSUs, lsblk for disks (serials as
the kernel sees them), lshw for NICs, lspci for GPUs. Sources that are absent on a
host (no SMBIOS in a VM) leave fields empty rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.models import (
    CommandResult,
    CpuInfo,
    DimmInfo,
    DiskInfo,
    GpuInfo,
    HardwareInventory,
    NicInfo,
)
from harness.probes.dmidecode import DmiDecode, parse_dmidecode
from harness.probes.lsblk import BlockDevice, parse_lsblk
from harness.probes.lscpu import LscpuInfo, parse_lscpu
from harness.probes.lshw import LshwReport, parse_lshw
from harness.probes.lspci import PciDevice, parse_lspci_vmm

#: name -> (command, Debian package that provides it)
TOOLS: dict[str, tuple[str, str]] = {
    "lscpu": ("lscpu -J", "util-linux"),
    "lshw": ("lshw -json -quiet", "lshw"),
    "dmidecode": ("dmidecode", "dmidecode"),
    "lsblk": ("lsblk -J -O -b", "util-linux"),
    "lspci": ("lspci -vmm -nn -k", "pciutils"),
}

#: Tools whose failure leaves fields empty instead of failing the collection.
OPTIONAL_TOOLS = frozenset({"dmidecode"})

GPU_VENDORS = {"10de": "NVIDIA", "1002": "AMD"}
_GPU_CLASSES = ("0300", "0302", "0380")
_VIRTUAL_DISK = re.compile(r"^(loop|ram|zram|sr|fd|nbd|md|dm-)")


class CommandRunner(Protocol):
    @property
    def name(self) -> str: ...

    def run(self, command: str, timeout: float = 60.0, check: bool = False,
            attach: bool = True) -> CommandResult: ...

    def require(self, tool: str, package: str | None = None) -> None: ...


class CommandRunnerWithFacts(CommandRunner, Protocol):
    @property
    def facts(self) -> dict[str, Any]: ...


@dataclass
class RawInventory:
    """Parsed tool outputs of one host, before merging (kept as evidence)."""

    lscpu: LscpuInfo | None = None
    lshw: LshwReport | None = None
    dmidecode: DmiDecode | None = None
    lsblk: list[BlockDevice] = field(default_factory=list)
    lspci: list[PciDevice] = field(default_factory=list)
    meminfo_total_bytes: int | None = None
    notes: list[str] = field(default_factory=list)


def collect_raw(host: CommandRunner, timeout: float = 120.0) -> RawInventory:
    """Run each inventory tool on the host and parse its output."""
    for tool, (_, package) in TOOLS.items():
        host.require(tool, package)
    outputs: dict[str, str] = {}
    notes: list[str] = []
    for tool, (command, _) in TOOLS.items():
        result = host.run(command, timeout=timeout, check=tool not in OPTIONAL_TOOLS)
        if result.ok:
            outputs[tool] = result.stdout
        else:
            # Some hosts (VMs, a few boards) have no SMBIOS table: that is a fact about
            # the host, not a harness error; DIMM, BIOS and PSU fields stay empty.
            notes.append(f"{command} exited {result.exit_status}: "
                         f"{(result.stderr or result.stdout).strip()[-200:]}")
    meminfo = host.run("cat /proc/meminfo", timeout=timeout, check=True).stdout
    raw = parse_raw(outputs, meminfo)
    raw.notes = notes
    return raw


def parse_raw(outputs: dict[str, str], meminfo: str = "") -> RawInventory:
    """Parse tool outputs (a dict tool -> stdout); missing tools stay empty."""
    raw = RawInventory()
    if "lscpu" in outputs:
        raw.lscpu = parse_lscpu(outputs["lscpu"])
    if "lshw" in outputs:
        raw.lshw = parse_lshw(outputs["lshw"])
    if "dmidecode" in outputs:
        raw.dmidecode = parse_dmidecode(outputs["dmidecode"])
    if "lsblk" in outputs:
        raw.lsblk = parse_lsblk(outputs["lsblk"])
    if "lspci" in outputs:
        raw.lspci = parse_lspci_vmm(outputs["lspci"])
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", meminfo, re.M)
    raw.meminfo_total_bytes = int(match.group(1)) * 1024 if match else None
    return raw


def _cpu(raw: RawInventory) -> CpuInfo:
    if raw.lscpu is not None:
        return CpuInfo(raw.lscpu.model_name, raw.lscpu.sockets, raw.lscpu.cores, raw.lscpu.cpus)
    if raw.lshw is not None and raw.lshw.cpus:
        cpus = [c for c in raw.lshw.cpus if not c.disabled]
        cores = sum(c.enabled_cores or c.cores or 0 for c in cpus) or None
        threads = sum(c.threads or 0 for c in cpus) or None
        return CpuInfo(cpus[0].product if cpus else None, len(cpus) or None, cores, threads)
    return CpuInfo(None, None, None, None)


def _dimms(raw: RawInventory) -> tuple[DimmInfo, ...]:
    if raw.dmidecode is None:
        return ()
    return tuple(
        DimmInfo(
            locator=d.locator or d.handle, size_bytes=d.size_bytes or 0, type=d.type,
            speed_mts=d.speed_mts, manufacturer=d.manufacturer, part_number=d.part_number,
            serial=d.serial_number,
        )
        for d in raw.dmidecode.memory_devices() if d.installed
    )


def _memory_total(raw: RawInventory, dimms: tuple[DimmInfo, ...]) -> int | None:
    """Installed memory: the DIMMs if SMBIOS lists them, else lshw, else the kernel's view."""
    if dimms:
        return sum(d.size_bytes for d in dimms)
    if raw.lshw is not None and raw.lshw.memory_total_bytes:
        return raw.lshw.memory_total_bytes
    return raw.meminfo_total_bytes


def _disks(raw: RawInventory) -> tuple[DiskInfo, ...]:
    return tuple(
        DiskInfo(name=d.name, serial=(d.serial or "").strip() or None,
                 model=(d.model or "").strip() or None, size_bytes=d.size_bytes,
                 rotational=d.rota, transport=d.tran)
        for d in raw.lsblk
        if d.type == "disk" and not _VIRTUAL_DISK.match(d.name)
    )


def _nics(raw: RawInventory) -> tuple[NicInfo, ...]:
    if raw.lshw is None:
        return ()
    return tuple(
        NicInfo(name=n.logicalname or n.id, mac=n.mac.lower() if n.mac else None,
                speed_mbps=n.speed_bps // 1_000_000 if n.speed_bps else None, driver=n.driver)
        for n in raw.lshw.nics
    )


def _gpus(raw: RawInventory) -> tuple[GpuInfo, ...]:
    return tuple(
        GpuInfo(model=" ".join(filter(None, [d.vendor_name, d.device_name])) or d.description,
                pci_slot=d.slot)
        for d in raw.lspci
        if (d.vendor_id or "").lower() in GPU_VENDORS
        and (d.class_id or "")[:4] in _GPU_CLASSES
    )


def merge(raw: RawInventory) -> HardwareInventory:
    dmi = raw.dmidecode
    system = dmi.system() if dmi is not None else None
    bios = dmi.bios() if dmi is not None else None
    lshw_system = raw.lshw.system if raw.lshw is not None else None
    supplies = dmi.power_supplies() if dmi is not None else ()
    dimms = _dimms(raw)
    return HardwareInventory(
        system_vendor=(system.manufacturer if system else None)
        or (lshw_system.vendor if lshw_system else None),
        system_product=(system.product_name if system else None)
        or (lshw_system.product if lshw_system else None),
        system_serial=(system.serial_number if system else None)
        or (lshw_system.serial if lshw_system else None),
        bios_version=bios.version if bios else None,
        cpu=_cpu(raw),
        memory_total_bytes=_memory_total(raw, dimms),
        dimms=dimms,
        disks=_disks(raw),
        nics=_nics(raw),
        gpus=_gpus(raw),
        psu_count=sum(1 for p in supplies if p.present) if supplies else None,
    )




def hardware_inventory(host: CommandRunnerWithFacts, timeout: float = 120.0) -> HardwareInventory:
    """The host's merged inventory: from the inventory stage if it ran, else collected now."""
    cached = host.facts.get("hardware")
    if isinstance(cached, HardwareInventory):
        return cached
    inventory = merge(collect_raw(host, timeout))
    host.facts["hardware"] = inventory
    return inventory
