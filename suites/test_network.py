"""Network: iperf3 from the host to a server the controller runs."""

from __future__ import annotations

import pytest

from harness.host import HostUnderTest
from harness.netperf import Iperf3Server
from harness.probes.iperf3 import parse_iperf3

pytestmark = [pytest.mark.stage, pytest.mark.network]


def test_iperf3_throughput(host: HostUnderTest, iperf3_server: Iperf3Server) -> None:
    p = host.params
    host.require("iperf3")
    result = host.run(
        f"iperf3 -c {iperf3_server.address} -p {iperf3_server.port} -t {p['duration_s']} "
        f"-P {p['streams']} -J",
        timeout=p["duration_s"] + 60,
    )
    perf = parse_iperf3(result.stdout)
    host.record("iperf3 result", perf)
    assert perf.ok, f"iperf3 failed: {perf.error}"
    mbps = (perf.received_bps or 0) / 1e6
    host.measure("throughput", mbps, "Mbit/s")
    if perf.retransmits is not None:
        host.measure("retransmits", perf.retransmits, "count")
    assert mbps >= p["min_mbps"], (
        f"{mbps:.0f} Mbit/s received, below the profile's minimum of {p['min_mbps']:g} Mbit/s")
