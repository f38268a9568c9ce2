"""iperf3 -J parser: corpus, loopback captures on this VM, error documents, bad input, fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.probes import Iperf3Result, ParseError, parse_iperf3
from tests.helpers import mutate
from tests.unit.corpus_paths import available_corpus_names, corpus_text, local_text

LAN = "lan-1gbe_tcp-1stream-13s_iperf-3.0.11.json"
MININET = "mininet_tcp-4streams-60s_iperf-3.6.json"
CORPUS = [LAN, MININET]

KEYS = ["start", "end", "error", "test_start", "protocol", "num_streams", "duration", "reverse",
        "sum_sent", "sum_received", "sum", "bits_per_second", "bytes", "retransmits",
        "cpu_utilization_percent", "host_total", "remote_total", "version", "jitter_ms"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=6),
    max_leaves=30,
)


def test_corpus_has_no_unlisted_iperf3_files() -> None:
    assert available_corpus_names("iperf3") <= set(CORPUS)


def test_lan_1gbe_line_rate_no_retransmits() -> None:
    result = parse_iperf3(corpus_text("iperf3", LAN))
    assert result.ok and result.error is None
    assert (result.version, result.protocol, result.num_streams, result.duration_s) == (
        "iperf 3.0.11", "TCP", 1, 13.0)
    assert result.sent_bps is not None and round(result.sent_bps / 1e6) == 936
    assert result.received_bps is not None and round(result.received_bps / 1e6) == 934
    assert result.sent_bytes == 1520994808 and result.received_bytes == 1518193248
    assert result.retransmits == 0
    assert result.cpu_host_pct == pytest.approx(1.66812)
    assert result.cpu_remote_pct == pytest.approx(4.15082)
    assert result.reverse is False


def test_mininet_four_streams() -> None:
    result = parse_iperf3(corpus_text("iperf3", MININET))
    assert (result.version, result.num_streams, result.duration_s) == ("iperf 3.6", 4, 60.0)
    assert result.sent_bps == pytest.approx(17.54e9, rel=0.001)
    assert result.retransmits == 2
    assert result.cpu_host_pct == pytest.approx(49.7, abs=0.01)


def test_local_loopback_tcp() -> None:
    result = parse_iperf3(local_text("iperf3.json"))
    assert result.ok
    assert (result.version, result.protocol, result.num_streams) == ("iperf 3.12", "TCP", 1)
    assert result.sent_bps is not None and result.sent_bps > 0
    assert result.received_bps is not None and result.received_bps > 0
    assert result.sent_bytes == result.received_bytes == 6953369600
    assert result.retransmits == 13
    assert result.jitter_ms is None and result.lost_percent is None


def test_local_udp_has_no_retransmits() -> None:
    result = parse_iperf3(local_text("iperf3-udp.json"))
    assert result.protocol == "UDP"
    assert result.retransmits is None
    assert result.sent_bps == pytest.approx(100e6, rel=0.01)
    assert result.lost_percent == 0
    assert result.jitter_ms is not None and result.jitter_ms >= 0


def test_local_connection_refused_is_a_result_with_error() -> None:
    result = parse_iperf3(local_text("iperf3-refused.json"))
    assert not result.ok
    assert result.error == "unable to connect to server: Connection refused"
    assert result.version == "iperf 3.12"
    assert result.sent_bps is None and result.retransmits is None


def test_old_udp_schema_with_only_sum() -> None:
    document = {
        "start": {"version": "iperf 3.1.3", "test_start": {"protocol": "UDP", "num_streams": 1,
                                                             "duration": 10, "reverse": 1}},
        "end": {"sum": {"bytes": 1310720, "bits_per_second": 1048576.0, "jitter_ms": 0.5,
                        "lost_packets": 3, "lost_percent": 0.2}},
    }
    result = parse_iperf3(json.dumps(document))
    assert result.reverse is True
    assert result.sent_bps == result.received_bps == 1048576.0
    assert (result.jitter_ms, result.lost_percent, result.retransmits) == (0.5, 0.2, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty output"),
        ("iperf3: error - unable to connect to server", "invalid JSON at line 1"),
        ('{"start": {}, "intervals": [', "truncated JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"foo": 1}', "neither 'start' nor 'error'"),
        ('{"start": {}, "intervals": [], "end": {}}', "no 'end.sum_sent'"),
        ('{"start": {}, "end": {"sum_sent": {"bits_per_second": "fast"}, "sum_received": {}}}',
         "expected a number"),
        ('{"error": ["refused"]}', "expected text"),
        ("9" * 5000, "unreadable JSON"),
    ],
)
def test_malformed_input_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_iperf3(text)
    assert str(info.value).startswith("iperf3: ") and info.value.tool == "iperf3"


def test_truncated_capture_is_a_parse_error() -> None:
    text = local_text("iperf3.json")
    for cut in (3, 300, len(text) // 2, len(text) - 2):
        with pytest.raises(ParseError, match="truncated JSON"):
            parse_iperf3(text[:cut])


def _check(text: str) -> None:
    try:
        assert isinstance(parse_iperf3(text), Iperf3Result)
    except ParseError as error:
        assert error.tool == "iperf3"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _check(text)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_fuzz_arbitrary_json(value: object) -> None:
    _check(json.dumps(value))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_capture(data: st.DataObject) -> None:
    document = json.loads(local_text("iperf3-udp.json"))
    _check(json.dumps(mutate(data, document, JSON_VALUES)))

