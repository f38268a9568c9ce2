"""`lshw -json` -> LshwReport.

Nodes are recognised by `class`, `id`, `businfo` and `logicalname`, never by the
`description`, which lshw translates (a German host says "Systemspeicher"). Both layouts
are read: the old single top-level object and the newer top-level array.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from harness.probes._common import (
    JsonDict,
    expect_dict,
    expect_list,
    fail,
    load_json,
    opt_dict,
    opt_int,
    opt_str,
    to_int,
    type_name,
)

TOOL = "lshw"


@dataclass(frozen=True)
class LshwSystem:
    """The top `system` node; boot_status is SMBIOS boot status: normal, hardware-failure-fw..."""

    vendor: str | None
    product: str | None
    version: str | None
    serial: str | None
    boot_status: str | None
    chassis: str | None


@dataclass(frozen=True)
class LshwCpu:
    id: str
    businfo: str | None
    slot: str | None
    product: str | None
    vendor: str | None
    version: str | None
    cores: int | None
    enabled_cores: int | None
    threads: int | None
    clock_hz: int | None
    disabled: bool


@dataclass(frozen=True)
class LshwMemoryBank:
    """One DIMM slot; an empty slot has no size (lshw leaves `size` out)."""

    id: str
    slot: str | None
    size_bytes: int | None
    description: str | None
    product: str | None
    vendor: str | None
    serial: str | None
    clock_hz: int | None

    @property
    def populated(self) -> bool:
        return bool(self.size_bytes)


@dataclass(frozen=True)
class LshwDisk:
    id: str
    businfo: str | None
    logicalname: str | None
    serial: str | None
    product: str | None
    vendor: str | None
    version: str | None
    size_bytes: int | None


@dataclass(frozen=True)
class LshwNic:
    """A network node; serial is the MAC address, speeds are in bit/s."""

    id: str
    businfo: str | None
    logicalname: str | None
    mac: str | None
    product: str | None
    vendor: str | None
    driver: str | None
    link: bool | None
    speed_bps: int | None
    capacity_bps: int | None
    disabled: bool


@dataclass(frozen=True)
class LshwDisplay:
    id: str
    businfo: str | None
    product: str | None
    vendor: str | None
    driver: str | None


@dataclass(frozen=True)
class LshwPower:
    """A `power` node: a PSU or a laptop battery (capacity in lshw's `units`, often bogus mWh)."""

    id: str
    description: str | None
    product: str | None
    vendor: str | None
    serial: str | None
    capacity: int | None
    units: str | None


@dataclass(frozen=True)
class LshwReport:
    system: LshwSystem
    cpus: tuple[LshwCpu, ...]
    memory_banks: tuple[LshwMemoryBank, ...]
    memory_total_bytes: int | None
    disks: tuple[LshwDisk, ...]
    nics: tuple[LshwNic, ...]
    displays: tuple[LshwDisplay, ...]
    power_supplies: tuple[LshwPower, ...]

    @property
    def populated_banks(self) -> tuple[LshwMemoryBank, ...]:
        return tuple(bank for bank in self.memory_banks if bank.populated)


@dataclass(frozen=True)
class _Node:
    data: JsonDict
    path: str
    parent_class: str | None
    parent: JsonDict | None = None


def parse_lshw(text: str) -> LshwReport:
    """Parse `lshw -json` output (either layout) into a typed report."""
    document = load_json(TOOL, text)
    roots = _roots(document)
    nodes = list(_walk(roots))
    system_node = next((n for n in nodes if _cls(n) == "system"), None)
    if system_node is None:
        fail(TOOL, "no node with class 'system' (not lshw -json output?)")

    cpus: list[LshwCpu] = []
    banks: list[LshwMemoryBank] = []
    memory_sizes: list[int] = []
    disks: list[LshwDisk] = []
    nics: list[LshwNic] = []
    displays: list[LshwDisplay] = []
    powers: list[LshwPower] = []
    for node in nodes:
        cls = _cls(node)
        node_id = _id(node)
        if cls == "processor":
            cpus.append(_cpu(node))
        elif cls == "memory" and node_id.startswith("bank"):
            banks.append(_bank(node))
        elif cls == "memory" and _is_system_memory(node):
            size = opt_int(TOOL, node.data, "size", node.path)
            if size is not None:
                memory_sizes.append(size)
        elif cls == "disk" and node.parent_class != "disk":
            disks.append(_disk(node))
        elif cls == "network" and not _has_network_child(node):
            nics.append(_nic(node))
        elif cls == "display":
            displays.append(_display(node))
        elif cls == "power":
            powers.append(_power(node))

    if memory_sizes:
        total: int | None = sum(memory_sizes)
    elif any(bank.populated for bank in banks):
        total = sum(bank.size_bytes or 0 for bank in banks)
    else:
        total = None
    return LshwReport(
        system=_system(system_node),
        cpus=tuple(cpus),
        memory_banks=tuple(banks),
        memory_total_bytes=total,
        disks=tuple(disks),
        nics=tuple(nics),
        displays=tuple(displays),
        power_supplies=tuple(powers),
    )


def _roots(document: object) -> list[JsonDict]:
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list):
        if not document:
            fail(TOOL, "expected a JSON object or a non-empty array, got an empty array")
        return [expect_dict(TOOL, item, f"[{i}]") for i, item in enumerate(document)]
    fail(TOOL, f"expected a JSON object or array, got {type_name(document)}")


def _walk(roots: list[JsonDict]) -> Iterator[_Node]:
    """Depth-first, document order, without recursion (deep JSON must not crash us)."""
    stack = [_Node(root, f"[{i}]", None) for i, root in reversed(list(enumerate(roots)))]
    while stack:
        node = stack.pop()
        cls = opt_str(TOOL, node.data, "class", node.path)
        opt_str(TOOL, node.data, "id", node.path)
        yield node
        children = node.data.get("children")
        if children is None:
            continue
        items = expect_list(TOOL, children, f"{node.path}.children")
        for index in reversed(range(len(items))):
            child = expect_dict(TOOL, items[index], f"{node.path}.children[{index}]")
            child_id = child.get("id")
            label = child_id if isinstance(child_id, str) else str(index)
            stack.append(_Node(child, f"{node.path}/{label}", cls, node.data))


def _cls(node: _Node) -> str | None:
    return opt_str(TOOL, node.data, "class", node.path)


def _id(node: _Node) -> str:
    return opt_str(TOOL, node.data, "id", node.path) or ""


def _s(node: _Node, key: str) -> str | None:
    return opt_str(TOOL, node.data, key, node.path)


def _config(node: _Node) -> JsonDict:
    return opt_dict(TOOL, node.data, "configuration", node.path) or {}


def _conf_str(node: _Node, key: str) -> str | None:
    return opt_str(TOOL, _config(node), key, f"{node.path}.configuration")


def _conf_int(node: _Node, key: str) -> int | None:
    return opt_int(TOOL, _config(node), key, f"{node.path}.configuration")


def _disabled(node: _Node) -> bool:
    return node.data.get("disabled") is True


def _logicalnames(node: _Node) -> tuple[str, ...]:
    value = node.data.get("logicalname")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    items = expect_list(TOOL, value, f"{node.path}.logicalname")
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            fail(TOOL, f"{node.path}.logicalname: expected strings, got {type_name(item)}")
        names.append(item)
    return tuple(names)


def _is_system_memory(node: _Node) -> bool:
    """The `memory` / `memory:N` node under the board, not a PCI memory controller."""
    node_id = _id(node)
    return (node_id == "memory" or node_id.startswith("memory:")) and "businfo" not in node.data


def _system(node: _Node) -> LshwSystem:
    return LshwSystem(
        vendor=_s(node, "vendor"),
        product=_s(node, "product"),
        version=_s(node, "version"),
        serial=_s(node, "serial"),
        boot_status=_conf_str(node, "boot"),
        chassis=_conf_str(node, "chassis"),
    )


def _cpu(node: _Node) -> LshwCpu:
    return LshwCpu(
        id=_id(node),
        businfo=_s(node, "businfo"),
        slot=_s(node, "slot"),
        product=_s(node, "product"),
        vendor=_s(node, "vendor"),
        version=_s(node, "version"),
        cores=_conf_int(node, "cores"),
        enabled_cores=_conf_int(node, "enabledcores"),
        threads=_conf_int(node, "threads"),
        clock_hz=opt_int(TOOL, node.data, "size", node.path),
        disabled=_disabled(node),
    )


def _bank(node: _Node) -> LshwMemoryBank:
    return LshwMemoryBank(
        id=_id(node),
        slot=_s(node, "slot"),
        size_bytes=opt_int(TOOL, node.data, "size", node.path),
        description=_s(node, "description"),
        product=_s(node, "product"),
        vendor=_s(node, "vendor"),
        serial=_s(node, "serial"),
        clock_hz=opt_int(TOOL, node.data, "clock", node.path),
    )


def _disk(node: _Node) -> LshwDisk:
    names = _logicalnames(node)
    dev = next((name for name in names if name.startswith("/dev/")), names[0] if names else None)
    return LshwDisk(
        id=_id(node),
        businfo=_s(node, "businfo"),
        logicalname=dev,
        serial=_s(node, "serial"),
        product=_s(node, "product"),
        vendor=_s(node, "vendor"),
        version=_s(node, "version"),
        size_bytes=opt_int(TOOL, node.data, "size", node.path),
    )


def _has_network_child(node: _Node) -> bool:
    """virtio: the PCI function and its virtio device are both class network; keep the child."""
    children = node.data.get("children")
    return isinstance(children, list) and any(
        isinstance(child, dict) and child.get("class") == "network" for child in children
    )


def _nic(node: _Node) -> LshwNic:
    link = _conf_str(node, "link")
    bits = _s(node, "units") == "bit/s"
    names = _logicalnames(node)
    parent = node.parent if node.parent_class == "network" and node.parent else {}
    return LshwNic(
        id=_id(node),
        businfo=_s(node, "businfo"),
        logicalname=names[0] if names else None,
        mac=_s(node, "serial"),
        product=_s(node, "product") or opt_str(TOOL, parent, "product", node.path),
        vendor=_s(node, "vendor") or opt_str(TOOL, parent, "vendor", node.path),
        driver=_conf_str(node, "driver"),
        link=None if link is None else link == "yes",
        speed_bps=opt_int(TOOL, node.data, "size", node.path) if bits else None,
        capacity_bps=opt_int(TOOL, node.data, "capacity", node.path) if bits else None,
        disabled=_disabled(node),
    )


def _display(node: _Node) -> LshwDisplay:
    return LshwDisplay(
        id=_id(node),
        businfo=_s(node, "businfo"),
        product=_s(node, "product"),
        vendor=_s(node, "vendor"),
        driver=_conf_str(node, "driver"),
    )


def _power(node: _Node) -> LshwPower:
    return LshwPower(
        id=_id(node),
        description=_s(node, "description"),
        product=_s(node, "product"),
        vendor=_s(node, "vendor"),
        serial=_s(node, "serial"),
        capacity=to_int(TOOL, node.data.get("capacity"), f"{node.path}.capacity"),
        units=_s(node, "units"),
    )
