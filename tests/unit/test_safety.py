"""Safety-gate pieces that need no host: wipefs output read from real runs of wipefs on
image files, the PXE allowlist read from a rendered dnsmasq.conf."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.models import PxeConfig
from harness.probes import ParseError
from harness.probes.wipefs import parse_wipefs
from harness.safety import allowlisted_macs


def wipefs(path: Path) -> str:
    return subprocess.run(["wipefs", "--no-act", "--json", str(path)], capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.parametrize("mkfs", [["mkfs.ext4", "-q", "-F"], ["mkswap"]])
def test_signatures_found_on_real_images(tmp_path: Path, mkfs: list[str]) -> None:
    image = tmp_path / "disk.img"
    with image.open("wb") as fh:
        fh.truncate(8 << 20)
    assert parse_wipefs(wipefs(image)) == []
    subprocess.run([*mkfs, str(image)], check=True, capture_output=True)
    [signature] = parse_wipefs(wipefs(image))
    assert signature.type == ("ext4" if "ext4" in mkfs[0] else "swap")
    assert signature.offset.startswith("0x")


def test_partition_table_found(tmp_path: Path) -> None:
    """A DOS partition table (one Linux partition), written byte by byte: no fdisk needed."""
    image = tmp_path / "disk.img"
    mbr = bytearray(512)
    entry = bytes([0x00, 0, 0, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little") \
        + (8192).to_bytes(4, "little")
    mbr[446:462] = entry
    mbr[510:512] = b"\x55\xaa"
    with image.open("wb") as fh:
        fh.write(mbr)
        fh.truncate(8 << 20)
    assert [s.type for s in parse_wipefs(wipefs(image))] == ["dos"]


@pytest.mark.parametrize("text", ["{", '{"signatures": 3}', '{"signatures": [{"offset": 1}]}',
                                  "[]"])
def test_malformed_wipefs_output(text: str) -> None:
    with pytest.raises(ParseError, match="wipefs"):
        parse_wipefs(text)


@given(st.text(max_size=200))
def test_wipefs_parser_only_raises_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_wipefs(text)


def test_allowlist_from_rendered_dnsmasq_conf(tmp_path: Path) -> None:
    pxe = PxeConfig(server="10.77.0.1", interface="br0", dhcp_range=("10.77.0.100",
                                                                     "10.77.0.200"),
                    root=str(tmp_path))
    assert allowlisted_macs(pxe) == set()  # no server set up: nothing is allowlisted
    (tmp_path / "dnsmasq.conf").write_text(
        "port=0\ndhcp-host=52:54:00:AA:00:01,52:54:00:aa:00:02,10.77.0.11,node01\n"
        "# dhcp-host=52:54:00:aa:00:09,10.77.0.19,commented\ndhcp-ignore=tag:!known\n")
    assert allowlisted_macs(pxe) == {"52:54:00:aa:00:01", "52:54:00:aa:00:02"}
