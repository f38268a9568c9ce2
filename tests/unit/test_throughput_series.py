"""Throughput over time: fio --status-interval streams and iperf3 intervals captured on
this VM, parsed into series and plotted; records without a series get no plot."""

from __future__ import annotations

import io
import itertools
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.plots import plot_record, series_step_s
from harness.probes import ParseError
from harness.probes.fio import FioResult, parse_fio
from harness.probes.iperf3 import parse_iperf3
from tests.helpers import mutate
from tests.unit.corpus_paths import corpus_text, local_text

VERIFY = "fio-status-interval-verify.json"  # 64 MiB written, then read back to verify
WRITE = "fio-status-interval.json"  # runtime ran out while writing: no verify pass
MiB = 2**20


def documents(text: str) -> list[Any]:
    """The JSON documents of a fio stream, one after another."""
    decoder, pos = json.JSONDecoder(), 0
    found: list[Any] = []
    while text[pos:].strip():
        pos += len(text[pos:]) - len(text[pos:].lstrip())
        document, pos = decoder.raw_decode(text, pos)
        found.append(document)
    return found


def stream(docs: list[Any]) -> str:
    return "\n".join(json.dumps(d, indent=2) for d in docs) + "\n"


def moved(result: FioResult, attribute: str) -> float:
    return float(sum(getattr(i, attribute) * (i.end_s - i.start_s)
                     for i in result.intervals))


def test_status_stream_last_report_is_the_result_and_the_rest_a_series() -> None:
    text = local_text(VERIFY)
    assert len(documents(text)) == 4  # three 1 s reports and the result
    result = parse_fio(text)
    (job,) = result.jobs
    assert job.write is not None and job.write.io_bytes == 64 * MiB
    assert job.read is not None and job.read.io_bytes == 29433856  # the verify read-back
    assert job.read.bw_bytes_per_s > 0  # the result's figures, not a running report's zero
    assert len(result.intervals) == 4
    assert result.intervals[0].start_s == 0.0
    assert all(a.end_s == b.start_s for a, b in itertools.pairwise(result.intervals))
    assert result.intervals[-1].end_s == pytest.approx(3.045, abs=0.001)
    # write first, then the verify pass reads
    assert result.intervals[0].write_bytes_per_s > 20 * MiB
    assert result.intervals[0].read_bytes_per_s == 0
    assert result.intervals[-1].read_bytes_per_s > 20 * MiB
    assert result.intervals[-1].write_bytes_per_s == 0
    # the series adds up to the result's totals
    assert moved(result, "write_bytes_per_s") == pytest.approx(64 * MiB)
    assert moved(result, "read_bytes_per_s") == pytest.approx(29433856)
    assert result.messages == () and result.total_errors == 0


def test_status_stream_write_only() -> None:
    result = parse_fio(local_text(WRITE))
    assert [round(i.end_s, 3) for i in result.intervals] == [0.885, 1.875, 2.88, 3.042]
    assert all(i.read_bytes_per_s == 0 for i in result.intervals)
    assert moved(result, "write_bytes_per_s") == pytest.approx(95461376)


def test_single_report_has_no_series() -> None:
    assert parse_fio(local_text("fio.json")).intervals == ()
    assert parse_fio(corpus_text(
        "fio", "hp-dl380g8_h420i_crucial-mx200_randread-4k_qd1_nj1.json")).intervals == ()


def test_messages_between_reports_are_kept() -> None:
    docs = documents(local_text(VERIFY))
    text = ("fio: warning before\n" + json.dumps(docs[0]) + "\nverify: bad magic header 0\n"
            + stream(docs[1:]) + "fio: after\n")
    result = parse_fio(text)
    assert result.messages == ("fio: warning before", "verify: bad magic header 0",
                               "fio: after")
    assert result.verify_errors == ("verify: bad magic header 0",)
    assert len(result.intervals) == 4


def test_a_report_whose_clock_went_back_is_left_out() -> None:
    docs = documents(local_text(VERIFY))
    docs[2]["timestamp_ms"] = docs[1]["timestamp_ms"]
    result = parse_fio(stream(docs))
    # the zero-length interval is gone (its bytes with it), the rest stay
    assert [round(i.end_s, 3) for i in result.intervals] == [0.942, 1.941, 3.045]
    assert moved(result, "write_bytes_per_s") < 64 * MiB


def test_reports_without_a_clock_give_no_series() -> None:
    docs = documents(local_text(VERIFY))
    for doc in docs:
        del doc["timestamp_ms"]
    result = parse_fio(stream(docs))
    assert result.intervals == () and result.jobs[0].write is not None


@pytest.mark.parametrize(("text", "message"), [
    (local_text(VERIFY)[:-200], "truncated JSON"),
    ('{"fio version": "fio-3.33"}\n' + local_text("fio.json"), "report 1 of 2: no 'jobs'"),
    (local_text("fio.json") + '\n{"jobs": [{"jobname": "x"}]}\n', "missing 'jobname' or"),
    (local_text(VERIFY).replace('"timestamp_ms" : 1795343870712', '"timestamp_ms" : 1' + "0" * 30),
     "report 1 of 4: timestamp_ms or io_bytes beyond 64 bits"),
])
def test_bad_streams_are_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_fio(text)


LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_status_stream(data: st.DataObject) -> None:
    docs = documents(local_text(VERIFY))
    index = data.draw(st.integers(0, len(docs) - 1))
    docs[index] = mutate(data, docs[index], LEAVES)
    try:
        result = parse_fio(stream(docs))
    except ParseError as error:
        assert error.tool == "fio"
        return
    assert all(i.end_s >= i.start_s and i.read_bytes_per_s >= 0 and i.write_bytes_per_s >= 0
               for i in result.intervals)


def test_iperf3_intervals_add_up_to_the_summary() -> None:
    result = parse_iperf3(local_text("iperf3-intervals.json"))  # -P 2 -t 4 on loopback
    assert result.num_streams == 2 and len(result.intervals) == 4
    assert [i.retransmits for i in result.intervals] == [6, 16, 5, 2]
    assert sum(i.retransmits or 0 for i in result.intervals) == result.retransmits == 29
    assert [round(i.bits_per_second / 1e9, 2) for i in result.intervals] == [
        10.89, 6.87, 7.43, 4.57]
    assert not any(i.omitted for i in result.intervals)
    assert result.intervals[-1].end_s == pytest.approx(4.0, abs=0.05)


def test_iperf3_corpus_and_udp_intervals() -> None:
    lan = parse_iperf3(corpus_text("iperf3", "lan-1gbe_tcp-1stream-13s_iperf-3.0.11.json"))
    assert len(lan.intervals) == 13
    assert all(0.9e9 < i.bits_per_second < 0.96e9 for i in lan.intervals)
    udp = parse_iperf3(local_text("iperf3-udp.json"))
    assert udp.intervals and all(i.retransmits is None for i in udp.intervals)
    assert parse_iperf3(local_text("iperf3-refused.json")).intervals == ()


def test_iperf3_bad_intervals_are_parse_errors() -> None:
    document = json.loads(local_text("iperf3-intervals.json"))
    document["intervals"] = {"sum": {}}
    with pytest.raises(ParseError, match="intervals: expected a JSON array"):
        parse_iperf3(json.dumps(document))


def png(record: object) -> Image.Image:
    image = plot_record("vm: throughput", record)
    assert image is not None and image.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(image))


def coloured_pixels(img: Image.Image) -> int:
    rgb = np.asarray(img.convert("RGB"), dtype=int)
    return int((rgb.max(axis=2) - rgb.min(axis=2) > 60).sum())


def test_fio_series_is_plotted_in_one_panel() -> None:
    img = png(parse_fio(local_text(VERIFY)))
    assert img.size == (800, 320)
    assert coloured_pixels(img) > 300


def test_iperf3_tcp_gets_throughput_and_retransmit_panels_udp_one() -> None:
    tcp = png(parse_iperf3(local_text("iperf3-intervals.json")))
    assert tcp.size == (800, 580) and coloured_pixels(tcp) > 300
    assert png(parse_iperf3(local_text("iperf3-udp.json"))).size == (800, 320)


def _one_interval() -> str:
    document = json.loads(local_text("iperf3-intervals.json"))
    document["intervals"] = document["intervals"][:1]
    return json.dumps(document)


def _two_reports_without_a_start() -> str:
    """The last running report (its job_runtime removed: no start to count from) and the
    result: one interval between them."""
    docs = documents(local_text(VERIFY))[-2:]
    for job in docs[0]["jobs"]:
        del job["job_runtime"]
    return stream(docs)


@pytest.mark.parametrize("record", [
    parse_fio(local_text("fio.json")),  # one report: no series
    parse_fio(_two_reports_without_a_start()),  # one interval
    parse_iperf3(local_text("iperf3-refused.json")),
    parse_iperf3(_one_interval()),
])
def test_no_series_no_plot(record: object) -> None:
    assert plot_record("x", record) is None


@pytest.mark.parametrize(("duration_s", "step"), [
    (0, 1), (2, 1), (10, 1), (60, 1), (61, 2), (300, 5), (600, 10), (3600, 60)])
def test_series_step_keeps_about_sixty_samples(duration_s: float, step: int) -> None:
    assert series_step_s(duration_s) == step
