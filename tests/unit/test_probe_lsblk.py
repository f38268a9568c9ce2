"""lsblk -J parser: captures from this VM, older util-linux shapes, malformed input, fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.probes import BlockDevice, ParseError, parse_lsblk
from tests.unit.corpus_paths import local_text

KEYS = ["blockdevices", "name", "children", "size", "rota", "rm", "ro", "mountpoints",
        "mountpoint", "serial", "path", "type"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    | st.sampled_from(["sda", "10G", "1", "0", "disk", "part", "1.8T"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5),
    max_leaves=25,
)

OLD_UTIL_LINUX = """{
   "blockdevices": [
      {"name": "sda", "path": "/dev/sda", "type": "disk", "size": "480103981056",
       "serial": "S45NNE0M123456", "model": "SAMSUNG MZ7LH480HAHQ-00005 ", "vendor": "ATA     ",
       "wwn": "0x5002538e000000a1", "rota": "0", "rm": "0", "ro": "0", "tran": "sata",
       "fstype": null, "mountpoint": null,
       "children": [
          {"name": "sda1", "path": "/dev/sda1", "type": "part", "size": "536870912",
           "rota": "0", "fstype": "vfat", "mountpoint": "/boot/efi"},
          {"name": "sda2", "path": "/dev/sda2", "type": "part", "size": "479565037568",
           "rota": "0", "fstype": "LVM2_member", "mountpoint": null,
           "children": [
              {"name": "vg0-root", "type": "lvm", "size": "107374182400", "rota": "0",
               "fstype": "ext4", "mountpoint": "/"}
           ]}
       ]},
      {"name": "sdb", "type": "disk", "size": "4000787030016", "rota": "1", "tran": "sas",
       "model": null, "serial": "   "}
   ]
}"""


def test_local_capture_with_bytes() -> None:
    devices = parse_lsblk(local_text("lsblk.json"))
    assert [(d.name, d.type) for d in devices] == [("zram0", "disk"), ("vda", "disk")]
    zram, vda = devices
    assert zram.size_bytes == 0 and zram.mountpoints == () and zram.rota is False
    assert vda.path == "/dev/vda"
    assert vda.size_bytes == 274877906944
    assert vda.rota is True and vda.removable is False and vda.read_only is False
    assert vda.mountpoints == ("/",)
    assert vda.children == ()
    assert vda.serial is None and vda.wwn is None


def test_local_capture_with_human_sizes_matches() -> None:
    exact = parse_lsblk(local_text("lsblk.json"))
    human = parse_lsblk(local_text("lsblk-human.json"))
    assert [(d.name, d.size_bytes) for d in human] == [(d.name, d.size_bytes) for d in exact]


def test_old_util_linux_strings_and_nested_children() -> None:
    sda, sdb = parse_lsblk(OLD_UTIL_LINUX)
    assert sda.size_bytes == 480103981056
    assert (sda.model, sda.vendor, sda.serial) == (
        "SAMSUNG MZ7LH480HAHQ-00005", "ATA", "S45NNE0M123456")
    assert (sda.rota, sda.removable, sda.read_only, sda.tran) == (False, False, False, "sata")
    assert sda.wwn == "0x5002538e000000a1"
    assert [d.name for d in sda.walk()] == ["sda", "sda1", "sda2", "vg0-root"]
    root = sda.children[1].children[0]
    assert (root.type, root.fstype, root.mountpoints) == ("lvm", "ext4", ("/",))
    assert sda.children[0].mountpoints == ("/boot/efi",)
    assert sdb.rota is True and sdb.serial is None and sdb.model is None


@pytest.mark.parametrize(
    ("size", "expected"),
    [("10G", 10 * 1024**3), ("0B", 0), ("1.8T", round(1.8 * 1024**4)), ("512", 512),
     ("4K", 4096), ("931,5G", round(931.5 * 1024**3))],
)
def test_human_sizes(size: str, expected: int) -> None:
    (device,) = parse_lsblk(json.dumps({"blockdevices": [{"name": "x", "size": size}]}))
    assert device.size_bytes == expected


def test_empty_device_list() -> None:
    assert parse_lsblk('{"blockdevices": []}') == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty output"),
        ("lsblk: unknown column: XYZ", "invalid JSON"),
        ('{"blockdevices": [', "truncated JSON at line 1"),
        ("[]", "expected a JSON object"),
        ('{"devices": []}', "no 'blockdevices'"),
        ('{"blockdevices": {}}', "expected a JSON array"),
        ('{"blockdevices": [{"size": 1}]}', "without a 'name'"),
        ('{"blockdevices": [{"name": "a", "size": "huge"}]}', "expected a size"),
        ('{"blockdevices": [{"name": "a", "rota": "yes"}]}', "expected true/false"),
        ('{"blockdevices": [{"name": "a", "children": [3]}]}', "expected a JSON object"),
        ('{"blockdevices": [{"name": "a", "mountpoints": [1]}]}', "expected strings"),
        ('{"blockdevices": [{"name": "a", "size": "' + "1" * 5000 + '"}]}', "expected a size"),
    ],
)
def test_malformed_input_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_lsblk(text)
    assert str(info.value).startswith("lsblk: ") and info.value.tool == "lsblk"


def test_truncated_capture_is_a_parse_error() -> None:
    text = local_text("lsblk.json")
    for cut in (10, len(text) // 2, len(text) - 3):
        with pytest.raises(ParseError, match="truncated JSON"):
            parse_lsblk(text[:cut])


def _parse_or_parse_error(text: str) -> None:
    try:
        devices = parse_lsblk(text)
    except ParseError as error:
        assert error.tool == "lsblk"
        return
    assert all(isinstance(d, BlockDevice) for top in devices for d in top.walk())


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _parse_or_parse_error(text)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_fuzz_arbitrary_json(value: object) -> None:
    _parse_or_parse_error(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(st.lists(JSON_VALUES, max_size=3))
def test_fuzz_device_lists(devices: list[object]) -> None:
    _parse_or_parse_error(json.dumps({"blockdevices": devices}))
