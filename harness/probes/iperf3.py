"""`iperf3 -J` -> Iperf3Result.

A JSON document with an "error" key is a valid result that carries the error (iperf3
3.12 even exits 0 on "Connection refused" with -J): a stage reports it as a network
failure, not as an unreadable capture. Retransmits are None where iperf3 does not count
them (UDP, non-Linux senders).

`intervals[].sum` (every stream together, one per `-i` seconds) becomes `intervals`: the
throughput over the run, which a plot shows and the summary figure hides.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.probes._common import (
    JsonDict,
    expect_dict,
    expect_list,
    fail,
    load_json,
    opt_dict,
    opt_float,
    opt_int,
    opt_str,
)

TOOL = "iperf3"


@dataclass(frozen=True)
class Iperf3Interval:
    """All streams over one report interval; seconds since the test started. `omitted`:
    inside the -O warm-up, which the summary leaves out."""

    start_s: float
    end_s: float
    bits_per_second: float
    retransmits: int | None
    omitted: bool


@dataclass(frozen=True)
class Iperf3Result:
    version: str | None
    protocol: str | None
    num_streams: int | None
    duration_s: float | None
    reverse: bool
    sent_bps: float | None
    sent_bytes: int | None
    received_bps: float | None
    received_bytes: int | None
    retransmits: int | None
    cpu_host_pct: float | None
    cpu_remote_pct: float | None
    jitter_ms: float | None = None
    lost_percent: float | None = None
    error: str | None = None
    intervals: tuple[Iperf3Interval, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_iperf3(text: str) -> Iperf3Result:
    """Parse one iperf3 -J document (client side)."""
    data = expect_dict(TOOL, load_json(TOOL, text), "top level")
    if "start" not in data and "error" not in data:
        fail(TOOL, "neither 'start' nor 'error' key (not iperf3 -J output?)")
    error = opt_str(TOOL, data, "error", "top level")
    start = opt_dict(TOOL, data, "start", "top level") or {}
    test = opt_dict(TOOL, start, "test_start", "start") or {}
    end = opt_dict(TOOL, data, "end", "top level") or {}
    sent = opt_dict(TOOL, end, "sum_sent", "end")
    received = opt_dict(TOOL, end, "sum_received", "end")
    udp_sum = opt_dict(TOOL, end, "sum", "end")
    if sent is None and udp_sum is not None:
        sent = udp_sum
    if received is None and udp_sum is not None:
        received = udp_sum
    if error is None and (sent is None or received is None):
        fail(TOOL, "no 'end.sum_sent'/'end.sum_received' summary and no 'error' (truncated?)")
    cpu = opt_dict(TOOL, end, "cpu_utilization_percent", "end") or {}
    jitter_source = udp_sum if udp_sum is not None else received
    return Iperf3Result(
        version=opt_str(TOOL, start, "version", "start"),
        protocol=opt_str(TOOL, test, "protocol", "start.test_start"),
        num_streams=opt_int(TOOL, test, "num_streams", "start.test_start"),
        duration_s=opt_float(TOOL, test, "duration", "start.test_start"),
        reverse=test.get("reverse") in (1, True),
        sent_bps=_f(sent, "bits_per_second", "end.sum_sent"),
        sent_bytes=_i(sent, "bytes", "end.sum_sent"),
        received_bps=_f(received, "bits_per_second", "end.sum_received"),
        received_bytes=_i(received, "bytes", "end.sum_received"),
        retransmits=_i(sent, "retransmits", "end.sum_sent"),
        cpu_host_pct=opt_float(TOOL, cpu, "host_total", "end.cpu_utilization_percent"),
        cpu_remote_pct=opt_float(TOOL, cpu, "remote_total", "end.cpu_utilization_percent"),
        jitter_ms=_f(jitter_source, "jitter_ms", "end.sum"),
        lost_percent=_f(jitter_source, "lost_percent", "end.sum"),
        error=error,
        intervals=_intervals(data),
    )


def _intervals(data: JsonDict) -> tuple[Iperf3Interval, ...]:
    """Each report's `sum`; one without its start, end or rate (cut short) is left out."""
    intervals = []
    for i, value in enumerate(expect_list(TOOL, data.get("intervals", []), "intervals")):
        where = f"intervals[{i}].sum"
        block = opt_dict(TOOL, expect_dict(TOOL, value, f"intervals[{i}]"), "sum",
                         f"intervals[{i}]")
        if block is None:
            continue
        start = opt_float(TOOL, block, "start", where)
        end = opt_float(TOOL, block, "end", where)
        bps = opt_float(TOOL, block, "bits_per_second", where)
        if start is None or end is None or bps is None:
            continue
        intervals.append(Iperf3Interval(
            start_s=start, end_s=end, bits_per_second=bps,
            retransmits=opt_int(TOOL, block, "retransmits", where),
            omitted=block.get("omitted") in (1, True)))
    return tuple(intervals)


def _f(block: JsonDict | None, key: str, where: str) -> float | None:
    return None if block is None else opt_float(TOOL, block, key, where)


def _i(block: JsonDict | None, key: str, where: str) -> int | None:
    return None if block is None else opt_int(TOOL, block, key, where)
