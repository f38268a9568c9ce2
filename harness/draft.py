"""`vet inventory draft`: a first vet_spec written from what a machine is now.

The draft is rendered from the same collection and merge the inventory and spec
stages use (harness/collect.py), so a machine vetted against its own draft matches
it by construction: the draft and the check cannot disagree about what they see.
"""

from __future__ import annotations

import json
import platform
import shlex

from harness.collect import collect_raw, merge
from harness.console.local import LocalChannel
from harness.errors import ToolMissing, VetError
from harness.models import CommandResult, HardwareInventory

GIB = 2**30


class LocalRunner:
    """Runs the collection commands on this machine, without a run store or report."""

    def __init__(self) -> None:
        self.name = "localhost"
        self.channel = LocalChannel(self.name)

    def run(self, command: str, timeout: float = 60.0, check: bool = False,
            attach: bool = True) -> CommandResult:
        result = self.channel.run(command, timeout)
        if check and not result.ok:
            raise VetError(f"`{command}` exited {result.exit_status}: "
                           f"{(result.stderr or result.stdout).strip()[-300:]}")
        return result

    def require(self, tool: str, package: str | None = None) -> None:
        if not self.channel.run(f"command -v {shlex.quote(tool)}", timeout=15).ok:
            raise ToolMissing.for_tool(self.name, tool, package)


def local_hardware() -> HardwareInventory:
    runner = LocalRunner()
    try:
        return merge(collect_raw(runner))
    finally:
        runner.channel.close()


def _scalar(value: object) -> str:
    """A YAML scalar that reads back as exactly `value` (strings always quoted)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return f"{value:g}" if value.is_integer() else repr(value)
    return str(value)


def _cpu_lines(hw: HardwareInventory) -> list[str]:
    fields = {"model": hw.cpu.model, "sockets": hw.cpu.sockets, "cores": hw.cpu.cores,
              "threads": hw.cpu.threads}
    lines = [f"    {key}: {_scalar(value)}" for key, value in fields.items() if value is not None]
    return ["  cpu:", *lines] if lines else []


def _memory_lines(hw: HardwareInventory) -> list[str]:
    if not hw.memory_total_bytes:
        return []
    source = "installed DIMMs" if hw.dimms else "no DIMM list (no SMBIOS): lshw or MemTotal"
    lines = ["  memory:",
             f"    total_gib: {_scalar(round(hw.memory_total_bytes / GIB, 1))}  # {source}",
             "    tolerance_pct: 5"]
    sizes = {round(d.size_bytes / GIB, 1) for d in hw.dimms}
    if hw.dimms:
        lines.append(f"    dimm_count: {len(hw.dimms)}")
    if len(sizes) == 1:
        lines.append(f"    dimm_size_gib: {_scalar(sizes.pop())}")
    return lines


def _disk_lines(hw: HardwareInventory) -> list[str]:
    with_serial = [d for d in hw.disks if d.serial]
    without = [d for d in hw.disks if not d.serial]
    if not hw.disks:
        return []
    lines = ["  disks:" if with_serial else "  # disks:"]
    for disk in with_serial:
        lines.append(f"    - serial: {_scalar(disk.serial)}")
        if disk.model:
            lines.append(f"      model: {_scalar(disk.model)}")
        if disk.size_bytes:
            lines.append(f"      size_gb: {_scalar(round(disk.size_bytes / 1e9, 1))}")
    for disk in without:
        size = f", {round(disk.size_bytes / 1e9, 1):g} GB" if disk.size_bytes else ""
        model = f", model {disk.model}" if disk.model else ""
        lines.append(f"    # {disk.name}: reports no serial{model}{size}; vet cannot expect it")
    return lines


def _nic_lines(hw: HardwareInventory) -> list[str]:
    nics = [n for n in hw.nics if n.mac]
    lines = ["  nics:"] if nics else []
    for nic in nics:
        lines.append(f"    - mac: {_scalar(nic.mac)}  # {nic.name}")
        if nic.speed_mbps:
            lines.append(f"      speed_mbps: {nic.speed_mbps}")
    return lines


def draft_spec_yaml(hw: HardwareInventory, hostname: str | None = None) -> str:
    """host_vars YAML with a vet_spec describing `hw`. Pure: same record, same text.

    Disks without a serial cannot be expected (vet only trusts serials), so they are
    written as comments; so are GPUs and PSUs, which the operator should confirm.
    """
    lines = [
        f"# vet_spec drafted by `vet inventory draft` on {hostname or 'this host'}.",
        "# Review it: this is what the machine is now; write what it is supposed to be.",
        "# Schema: docs/INVENTORY.md",
        "vet_spec:",
        *_cpu_lines(hw),
        *_memory_lines(hw),
        *_disk_lines(hw),
        *_nic_lines(hw),
    ]
    models = sorted({g.model for g in hw.gpus})
    if models:
        lines.append("  gpus:")
        lines += [f"    - {{model: {_scalar(m)}, count: {sum(g.model == m for g in hw.gpus)}}}"
                  for m in models]
    if hw.psu_count is not None:
        lines.append(f"  psu_count: {hw.psu_count}")
    if hw.bios_version:
        lines.append(f"  bios_version: {_scalar(hw.bios_version)}")
    if len(lines) == 4:
        lines[-1] = "vet_spec: {}"
    return "\n".join(lines) + "\n"


def draft_local() -> str:
    return draft_spec_yaml(local_hardware(), platform.node())
