"""stress-ng parsers: metrics text and --yaml file, corpus, this VM, bad input, fuzzing."""

# ruff: noqa: E501  (NEWER_RUN is verbatim-width stress-ng output)

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.probes import ParseError, StressNgResult, parse_stress_ng, parse_stress_ng_yaml
from tests.unit.corpus_paths import available_corpus_names, corpus_text, local_text

PKB = "pkb_stress-ng_context_metrics-brief.txt"

NEWER_RUN = """\
stress-ng: info:  [27983] setting to a 1 min run per stressor
stress-ng: info:  [27983] dispatching hogs: 2 cpu, 1 vm
stress-ng: fail:  [27990] vm: detected 1 bit errors while stressing memory
stress-ng: fail:  [27991] cpu: matrix-prod: result verification failed
stress-ng: metrc: [27983] stressor       bogo ops real time  usr time  sys time   bogo ops/s     bogo ops/s CPU used per       RSS Max
stress-ng: metrc: [27983]                           (secs)    (secs)    (secs)   (real time) (usr+sys time) instance (%)          (KB)
stress-ng: metrc: [27983] cpu              123456     60.00    119.80      0.10      2057.60        1029.66        99.92          7012
stress-ng: metrc: [27983] vm                 8765     60.01      2.10     57.80       146.06         146.33        99.80        270112
stress-ng: metrc: [27983] miscellaneous metrics:
stress-ng: metrc: [27983] cpu               12345.67 matrix-prod ops per sec (harmonic mean of 2 instances)
stress-ng: info:  [27983] skipped: 0
stress-ng: info:  [27983] passed: 2: cpu (2)
stress-ng: info:  [27983] failed: 1: vm (1)
stress-ng: info:  [27983] metrics untrustworthy: 0
stress-ng: info:  [27983] unsuccessful run completed in 1 min, 0.64 secs
"""


def test_corpus_has_no_unlisted_stress_ng_files() -> None:
    assert available_corpus_names("stress-ng") <= {PKB}


def test_pkb_context_metrics_brief() -> None:
    result = parse_stress_ng(corpus_text("stress-ng", PKB))
    (context,) = result.stressors
    assert context.name == "context"
    assert context.bogo_ops == 22429
    assert (context.real_time_s, context.usr_time_s, context.sys_time_s) == (5.00, 5.49, 4.48)
    assert (context.bogo_ops_per_s_real, context.bogo_ops_per_s_usr_sys) == (4485.82, 2249.65)
    assert context.cpu_used_pct is None and context.max_rss_kb is None
    assert result.completed_ok is True and result.duration_s == 5.0
    assert result.verification_failures == ()
    assert (result.passed, result.failed, result.skipped, result.untrustworthy) == (
        None, None, None, None)


def test_local_text_capture() -> None:
    result = parse_stress_ng(local_text("stress-ng.txt"))
    cpu = result.stressor("cpu")
    assert cpu is not None
    assert cpu.bogo_ops == 2924
    assert cpu.bogo_ops_per_s_real == 974.58
    assert cpu.cpu_used_pct == 99.96 and cpu.max_rss_kb == 6536
    assert result.completed_ok is True and result.duration_s == 3.0
    assert result.verification_failures == ()


def test_local_yaml_capture_agrees_with_text() -> None:
    from_yaml = parse_stress_ng_yaml(local_text("stress-ng.yaml"))
    from_text = parse_stress_ng(local_text("stress-ng.txt"))
    assert from_yaml.version == "0.15.06"
    (cpu,) = from_yaml.stressors
    assert cpu.name == "cpu" and cpu.bogo_ops == 2924
    assert cpu.real_time_s == pytest.approx(3.000268)
    assert cpu.bogo_ops_per_s_real == pytest.approx(from_text.stressors[0].bogo_ops_per_s_real,
                                                    abs=0.01)
    assert cpu.max_rss_kb == 6536
    assert from_yaml.completed_ok is None and from_yaml.duration_s is None


def test_newer_summary_lines_and_failures() -> None:
    result = parse_stress_ng(NEWER_RUN)
    assert [s.name for s in result.stressors] == ["cpu", "vm"]
    assert result.stressors[1].max_rss_kb == 270112
    assert (result.passed, result.failed, result.skipped, result.untrustworthy) == (2, 1, 0, 0)
    assert result.completed_ok is False
    assert result.duration_s == pytest.approx(60.64)
    assert len(result.verification_failures) == 2
    assert "verification failed" in result.verification_failures[1]


@pytest.mark.parametrize(
    ("tail", "seconds"),
    [("5.00s", 5.0), ("3.04 secs", 3.04), ("1 min", 60.0), ("1 min, 1.06 sec", 61.06),
     ("1 min 5.95 secs", 65.95), ("2 hours, 0.50 secs", 7200.5), ("sometime", None)],
)
def test_completion_durations(tail: str, seconds: float | None) -> None:
    result = parse_stress_ng(f"stress-ng: info:  [1] successful run completed in {tail}\n")
    assert result.duration_s == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not stress-ng output"),
        ("Segmentation fault (core dumped)\n", "not stress-ng output"),
        ("stress-ng: info:  [1] stressor bogo ops real time\n"
         "stress-ng: info:  [1] cpu    2924   3.00\n", "malformed metrics row"),
        ("stress-ng: info:  [1] passed: " + "1" * 5000 + "\n", "expected a count"),
    ],
)
def test_malformed_text_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_stress_ng(text)
    assert str(info.value).startswith("stress-ng: ") and info.value.tool == "stress-ng"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty YAML"),
        ("metrics: [\n", "invalid YAML"),
        ("- just\n- a list\n", "expected a YAML mapping with 'metrics', got an array"),
        ("foo: bar\n", "neither 'metrics' nor 'system-info'"),
        ("metrics: 3\n", "expected a JSON array"),
        ("metrics:\n  - stressor: cpu\n", "missing 'stressor' or 'bogo-ops'"),
        ("metrics:\n  - stressor: cpu\n    bogo-ops: 1\n", "missing 'wall-clock-time'"),
        ("metrics:\n  - stressor: cpu\n    bogo-ops: lots\n", "expected an integer"),
        ("system-info:\n  date: 2026-13-45\n", "invalid YAML"),
        ("!!python/object:os.system {}\n", "invalid YAML"),
    ],
)
def test_malformed_yaml_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_stress_ng_yaml(text)
    assert str(info.value).startswith("stress-ng: ")


def test_truncated_yaml_is_a_parse_error() -> None:
    text = local_text("stress-ng.yaml")
    cut = text[: text.index("wall-clock-time")]
    with pytest.raises(ParseError, match="truncated"):
        parse_stress_ng_yaml(cut)


def _check_text(text: str) -> None:
    try:
        assert isinstance(parse_stress_ng(text), StressNgResult)
    except ParseError as error:
        assert error.tool == "stress-ng"


def _check_yaml(text: str) -> None:
    try:
        assert isinstance(parse_stress_ng_yaml(text), StressNgResult)
    except ParseError as error:
        assert error.tool == "stress-ng"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _check_text(text)
    _check_yaml(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(NEWER_RUN.splitlines()) | st.text(max_size=30), max_size=20))
def test_fuzz_shuffled_log_lines(lines: list[str]) -> None:
    _check_text("\n".join(lines))


YAML_KEYS = ["metrics", "system-info", "stressor", "bogo-ops", "wall-clock-time", "user-time",
             "system-time", "bogo-ops-per-second-real-time", "max-rss",
             "bogo-ops-per-second-usr-sys-time", "stress-ng-version"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(YAML_KEYS) | st.text(max_size=5), inner, max_size=6),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_fuzz_arbitrary_yaml_documents(value: object) -> None:
    _check_yaml(yaml.safe_dump(value))
    _check_yaml(json.dumps(value))
