"""`lsblk -J -O -b` -> BlockDevice trees.

Run it with -b: sizes are then exact bytes. Human sizes ("10G", from lsblk without -b)
are still read, as approximate bytes, so an operator's ad-hoc capture is usable. Old
util-linux writes booleans as "0"/"1" and has `mountpoint` instead of `mountpoints`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from harness.probes._common import (
    JsonDict,
    binary_size,
    expect_dict,
    expect_list,
    fail,
    load_json,
    opt_str,
    short,
    type_name,
)

TOOL = "lsblk"


@dataclass(frozen=True)
class BlockDevice:
    name: str
    path: str | None
    type: str | None
    size_bytes: int | None
    serial: str | None
    model: str | None
    vendor: str | None
    wwn: str | None
    rota: bool | None
    removable: bool | None
    read_only: bool | None
    tran: str | None
    fstype: str | None
    mountpoints: tuple[str, ...]
    children: tuple[BlockDevice, ...]

    def walk(self) -> Iterator[BlockDevice]:
        """This device and every descendant, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


def parse_lsblk(text: str) -> list[BlockDevice]:
    """Parse `lsblk -J` output (best with -O -b) into top-level devices with children."""
    document = expect_dict(TOOL, load_json(TOOL, text), "top level")
    if "blockdevices" not in document:
        fail(TOOL, "no 'blockdevices' key (not lsblk -J output?)")
    items = expect_list(TOOL, document["blockdevices"], "blockdevices")
    return [_device(item, f"blockdevices[{i}]", 0) for i, item in enumerate(items)]


def _device(value: object, where: str, depth: int) -> BlockDevice:
    if depth > 64:
        fail(TOOL, f"{where}: device tree nested more than 64 levels")
    data = expect_dict(TOOL, value, where)
    name = opt_str(TOOL, data, "name", where)
    if not name:
        fail(TOOL, f"{where}: device without a 'name'")
    children_value = data.get("children")
    children: tuple[BlockDevice, ...] = ()
    if children_value is not None:
        items = expect_list(TOOL, children_value, f"{where}.children")
        children = tuple(
            _device(item, f"{where}.children[{i}]", depth + 1) for i, item in enumerate(items)
        )
    return BlockDevice(
        name=name,
        path=opt_str(TOOL, data, "path", where),
        type=opt_str(TOOL, data, "type", where),
        size_bytes=_size(data.get("size"), f"{where}.size"),
        serial=_text(data, "serial", where),
        model=_text(data, "model", where),
        vendor=_text(data, "vendor", where),
        wwn=_text(data, "wwn", where),
        rota=_flag(data.get("rota"), f"{where}.rota"),
        removable=_flag(data.get("rm"), f"{where}.rm"),
        read_only=_flag(data.get("ro"), f"{where}.ro"),
        tran=_text(data, "tran", where),
        fstype=_text(data, "fstype", where),
        mountpoints=_mountpoints(data, where),
        children=children,
    )


def _text(data: JsonDict, key: str, where: str) -> str | None:
    """lsblk pads vendor/model with spaces; an all-blank value means absent."""
    value = opt_str(TOOL, data, key, where)
    if value is None:
        return None
    return value.strip() or None


def _size(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        fail(TOOL, f"{where}: expected a size, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        size = binary_size(value)
        if size is not None:
            return size
    fail(TOOL, f"{where}: expected a size like 1024 or '10G', got {short(value)}")


def _flag(value: object, where: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if value in ("0", "1", 0, 1):
        return value in ("1", 1)
    fail(TOOL, f"{where}: expected true/false or '0'/'1', got {short(value)}")


def _mountpoints(data: JsonDict, where: str) -> tuple[str, ...]:
    value = data.get("mountpoints")
    if value is None:
        single = opt_str(TOOL, data, "mountpoint", where)
        return (single,) if single else ()
    items = expect_list(TOOL, value, f"{where}.mountpoints")
    points: list[str] = []
    for item in items:
        if item is None:
            continue
        if not isinstance(item, str):
            fail(TOOL, f"{where}.mountpoints: expected strings, got {type_name(item)}")
        points.append(item)
    return tuple(points)
