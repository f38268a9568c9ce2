"""Judgements for NICs (ethtool settings and counters) and measured throughput (iperf3).

A link that negotiated below the fastest mode the port supports warns (a 10G port at 1G:
cable category, switch port or autonegotiation); below the speed the spec expects, it fails.
iperf3 passes at a fraction of the link speed (0.8 by default), as the network stage does.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.judge.core import Judgement, Reasons
from harness.probes.ethtool import EthtoolSettings, EthtoolStats
from harness.probes.iperf3 import Iperf3Result


@dataclass(frozen=True)
class EthtoolThresholds:
    expected_speed_mbps: int | None = None


def judge_ethtool(settings: EthtoolSettings, limits: EthtoolThresholds | None = None) -> Judgement:
    limits = limits or EthtoolThresholds()
    reasons = Reasons()
    name = f"NIC {settings.interface}"
    expected = limits.expected_speed_mbps
    if settings.link_detected is False:
        text = f"{name}: no link (cable unplugged, or the switch port is down)"
        if expected is not None:
            reasons.fail(text + f"; the spec expects {expected} Mb/s")
        else:
            reasons.warn(text)
        return reasons.judgement()
    speed, best = settings.speed_mbps, settings.max_supported_speed_mbps
    if speed is not None and expected is not None and speed < expected:
        reasons.fail(f"{name}: link at {speed} Mb/s, the spec expects {expected} Mb/s")
    elif speed is not None and best is not None and speed < best:
        partner = settings.max_partner_speed_mbps
        hint = (" (the link partner advertises no faster mode)"
                if partner is not None and partner <= speed else "")
        reasons.warn(f"{name}: link negotiated {speed} Mb/s of the {best} Mb/s the port "
                     f"supports{hint}: check the cable, transceiver and switch port")
    if settings.duplex is not None and settings.duplex.lower() == "half":
        reasons.warn(f"{name}: half duplex: autonegotiation mismatch with the switch")
    if not reasons.problems:
        at = f" at {speed} Mb/s" if speed is not None else ""
        reasons.note(f"{name}: link up{at}" + (f", {settings.duplex} duplex"
                                               if settings.duplex else ""))
    return reasons.judgement()


def judge_ethtool_stats(stats: EthtoolStats, interface: str = "NIC") -> Judgement:
    reasons = Reasons()
    errors = stats.errors()
    if errors:
        listed = ", ".join(f"{name}={value}" for name, value in sorted(errors.items())[:8])
        reasons.warn(f"{interface}: link-level error counters are not zero ({listed}): "
                     "cable, transceiver or switch port")
    else:
        reasons.note(f"{interface}: {len(stats.counters)} counters, no CRC/symbol/alignment "
                     "errors")
    return reasons.judgement()


@dataclass(frozen=True)
class Iperf3Thresholds:
    link_speed_bps: float | None = None
    min_fraction: float = 0.8


def judge_iperf3(result: Iperf3Result, limits: Iperf3Thresholds | None = None) -> Judgement:
    limits = limits or Iperf3Thresholds()
    reasons = Reasons()
    if result.error is not None:
        reasons.fail(f"iperf3 failed: {result.error}")
        return reasons.judgement()
    rate = result.received_bps if result.received_bps is not None else result.sent_bps
    shown = f"{rate / 1e9:.2f} Gbit/s" if rate is not None else "unknown throughput"
    if limits.link_speed_bps and rate is not None:
        floor = limits.link_speed_bps * limits.min_fraction
        if rate < floor:
            reasons.fail(f"iperf3: {shown}, below {limits.min_fraction:.0%} of the "
                         f"{limits.link_speed_bps / 1e9:g} Gbit/s link")
    if not reasons.problems:
        retransmits = ("" if result.retransmits is None
                       else f", {result.retransmits} retransmits")
        reasons.note(f"iperf3: {shown} over {result.num_streams or 1} stream(s){retransmits}")
    return reasons.judgement()
