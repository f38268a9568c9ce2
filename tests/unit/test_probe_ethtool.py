"""ethtool parser: real veth captures, a 10GBASE-T port at 1G, -S counters, bad input, fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.judge import judge_ethtool, judge_ethtool_stats
from harness.probes._common import ParseError
from harness.probes.ethtool import parse_ethtool, parse_ethtool_stats

DATA = Path(__file__).resolve().parents[1] / "data" / "probes"


def text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_veth_up() -> None:
    settings_ = parse_ethtool(text("ethtool-veth-up.txt"))
    assert settings_.interface == "va"
    assert (settings_.speed_mbps, settings_.duplex, settings_.link_detected) == (
        10000, "Full", True)
    assert settings_.port == "Twisted Pair" and settings_.auto_negotiation is False
    assert settings_.supported_link_modes == () and settings_.max_supported_speed_mbps is None
    assert settings_.fields["Transceiver"] == "internal"


def test_veth_peer_down() -> None:
    assert parse_ethtool(text("ethtool-veth-peer-down.txt")).link_detected is False


def test_10gbaset_port_negotiated_1g() -> None:
    settings_ = parse_ethtool(text("ethtool-10gbaset-at-1g.txt"))
    assert settings_.speed_mbps == 1000 and settings_.max_supported_speed_mbps == 10000
    assert settings_.supported_link_modes == (
        "100baseT/Full", "1000baseT/Full", "10000baseT/Full", "2500baseT/Full", "5000baseT/Full")
    assert settings_.partner_link_modes == ("100baseT/Full", "1000baseT/Full")
    assert settings_.advertised_link_modes == settings_.supported_link_modes
    assert settings_.fields["Current message level"] == "0x00000007 (7) drv probe link"
    assert settings_.auto_negotiation is True


def test_unprivileged_run_keeps_the_complaints() -> None:
    captured = ("Settings for eth0:\n\tSpeed: Unknown!\n\tDuplex: Unknown! (255)\n"
                "Cannot get wake-on-lan settings: Operation not permitted\n"
                "\tLink detected: no\n")
    settings_ = parse_ethtool(captured)
    assert settings_.speed_mbps is None and settings_.duplex is None
    assert settings_.link_detected is False
    assert settings_.messages == ("Cannot get wake-on-lan settings: Operation not permitted",)


def test_stats_counters() -> None:
    stats = parse_ethtool_stats(text("ethtool-S-veth.txt"))
    assert stats.counters["peer_ifindex"] > 0 and stats.counters["rx_queue_0_drops"] == 0
    assert len(stats.counters) == 10 and stats.errors() == {}
    dirty = parse_ethtool_stats("NIC statistics:\n     rx_crc_errors: 12\n     rx_packets: 5\n"
                                "     tx_errors: 0\n     rx_missed_errors: 4\n")
    assert dirty.errors() == {"rx_crc_errors": 12}
    assert judge_ethtool_stats(dirty, "eth0").reasons[0].startswith("eth0: link-level error")


@pytest.mark.parametrize(("parser", "captured", "message"), [
    (parse_ethtool, "", "empty output"),
    (parse_ethtool, "Settings for eth0:\n", "with no settings"),
    (parse_ethtool, "netlink error: no device matches name (offset 24)\n", "no 'Settings for"),
    (parse_ethtool_stats, "", "empty output"),
    (parse_ethtool_stats, "Settings for eth0:\n", "no 'NIC statistics:' header"),
    (parse_ethtool_stats, "NIC statistics:\n     rx_packets: many\n", "expected 'name: number'"),
    (parse_ethtool_stats, "NIC statistics:\n     rx: " + "9" * 60 + "\n", "too long"),
])
def test_malformed_input_is_a_parse_error(parser: object, captured: str, message: str) -> None:
    assert callable(parser)
    with pytest.raises(ParseError, match=message) as info:
        parser(captured)
    assert info.value.tool == "ethtool"


def _check(captured: str) -> None:
    try:
        judge_ethtool(parse_ethtool(captured))
    except ParseError as error:
        assert error.tool == "ethtool"
    try:
        judge_ethtool_stats(parse_ethtool_stats(captured))
    except ParseError as error:
        assert error.tool == "ethtool"


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(captured: str) -> None:
    _check(captured)


_LINES = ["Settings for eth0:", "\tSpeed: 1000Mb/s", "\tSpeed: Unknown!", "\tDuplex: Half",
          "\tSupported link modes:   10baseT/Half 99999999999999999999999999999999999999999baseT",
          "\t                        25000baseCR/Full", "\tLink detected: yes", "NIC statistics:",
          "     rx_crc_errors: 3", "     x: -1", "\t\t\t drv probe", "Cannot get: x",
          "\tLink partner advertised link modes:  1000baseT/Full", "\t  xbaseT/Full base", ""]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_LINES) | st.text(max_size=12), max_size=10))
def test_fuzz_shuffled_ethtool_lines(lines: list[str]) -> None:
    _check("\n".join(lines))
