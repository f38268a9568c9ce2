"""Network: every expected NIC (by MAC) has its link at the expected speed (ethtool); iperf3
from the host to a server the controller runs reaches a fraction of the link speed."""

from __future__ import annotations

import shlex

import pytest

from harness.host import HostUnderTest
from harness.judge import (
    EthtoolThresholds,
    Finding,
    Iperf3Thresholds,
    Judgement,
    Verdict,
    judge_ethtool,
    judge_iperf3,
)
from harness.netperf import Iperf3Server
from harness.plots import series_step_s
from harness.probes import ParseError
from harness.probes.ethtool import EthtoolSettings, parse_ethtool
from harness.probes.iperf3 import parse_iperf3
from harness.probes.iproute import parse_ip_link, parse_route_get

pytestmark = [pytest.mark.stage, pytest.mark.network]


def _ethtool(host: HostUnderTest, interface: str) -> EthtoolSettings | None:
    result = host.run(f"ethtool {shlex.quote(interface)}", timeout=30)
    try:
        return parse_ethtool(result.stdout)
    except ParseError:
        return None


def test_expected_nics_have_link(host: HostUnderTest) -> None:
    p = host.params
    nics = host.expected.nics
    if not nics:
        pytest.skip("no NICs in vet_spec.nics: no link to check")
    assert p["slow_link"] in ("fail", "warn"), (
        f"network.slow_link is {p['slow_link']!r}; write fail or warn")
    host.require("ethtool")
    interfaces = parse_ip_link(host.run("ip -j link", check=True).stdout)
    judgements = []
    for nic in nics:
        interface = interfaces.get(nic.mac.lower())
        assert interface is not None, (
            f"expected NIC {nic.mac} is not on the host (its interfaces' MACs: "
            f"{', '.join(sorted(interfaces)) or 'none'})")
        settings = _ethtool(host, interface)
        assert settings is not None, f"ethtool {interface} ({nic.mac}) printed no settings"
        if settings.speed_mbps is not None:
            host.measure(f"link_speed_{interface}", settings.speed_mbps, "Mb/s")
        judgement = judge_ethtool(settings, EthtoolThresholds(expected_speed_mbps=nic.speed_mbps))
        if p["slow_link"] == "warn":  # what only the expected speed fails becomes a warning
            alone = judge_ethtool(settings).findings
            judgement = Judgement.of([f if f in alone else Finding(Verdict.WARNING, f.reason)
                                      for f in judgement.findings])
        judgements.append(judgement)
    verdict = Judgement.merge(judgements)
    host.record("NIC links", verdict)
    failing = [f.reason for f in verdict.findings if f.verdict is Verdict.FAILING]
    assert not failing, "; ".join(failing)


def test_iperf3_throughput(host: HostUnderTest, iperf3_server: Iperf3Server) -> None:
    p = host.params
    host.require("iperf3")
    route = host.run(f"ip -j route get {shlex.quote(iperf3_server.address)}", timeout=30)
    interface = parse_route_get(route.stdout) if route.ok else None
    settings = _ethtool(host, interface) if interface else None
    speed = settings.speed_mbps if settings is not None else None
    result = host.run(
        f"iperf3 -c {iperf3_server.address} -p {iperf3_server.port} -t {p['duration_s']} "
        f"-P {p['streams']} -i {series_step_s(p['duration_s'])} -J",
        timeout=p["duration_s"] + 60,
    )
    perf = parse_iperf3(result.stdout)
    host.record("iperf3 result", perf)
    assert perf.ok, f"iperf3 failed: {perf.error}"
    mbps = (perf.received_bps or 0) / 1e6
    host.measure("throughput", mbps, "Mbit/s")
    if perf.retransmits is not None:
        host.measure("retransmits", perf.retransmits, "count")
    if speed:
        judgement = judge_iperf3(perf, Iperf3Thresholds(
            link_speed_bps=speed * 1e6, min_fraction=float(p["link_fraction"])))
        host.record("iperf3 judgement", judgement)
        assert judgement.verdict is not Verdict.FAILING, (
            f"via {interface}: " + "; ".join(judgement.reasons))
    else:
        assert mbps >= p["min_mbps"], (
            f"{mbps:.0f} Mbit/s received, below the profile's minimum of {p['min_mbps']:g} "
            f"Mbit/s (the link speed of {interface or 'the route to the server'} is unknown)")
