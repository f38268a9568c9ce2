"""fio JSON parser: fio 2.x and 3.x corpus, real verify runs on this VM, bad input, fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.probes import FioResult, ParseError, parse_fio
from tests.helpers import mutate
from tests.unit.corpus_paths import available_corpus_names, corpus_text, local_text

QD1 = "hp-dl380g8_h420i_crucial-mx200_randread-4k_qd1_nj1.json"
QD16 = "hp-dl380g8_h420i_crucial-mx200_randwrite-4k_qd16_nj16.json"
RAID0 = "hp-dl380g8_mx200x3-mdraid0_randread-4k_qd32_nj8.json"
GCE = "gce-pd_pkb_fio-2.17_with-hist-log.json"
LEGACY = "pkb_fio-2.1.4_multi-job-sample.json"
CORPUS = [QD1, QD16, RAID0, GCE, LEGACY]

KEYS = ["jobs", "jobname", "error", "read", "write", "trim", "io_bytes", "io_kbytes", "bw",
        "bw_bytes", "iops", "runtime", "clat_ns", "lat_ns", "clat", "lat", "percentile", "mean",
        "99.000000", "disk_util", "name", "util", "total_err", "job options", "fio version"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=6),
    max_leaves=30,
)


def corpus(name: str) -> FioResult:
    return parse_fio(corpus_text("fio", name))


@pytest.mark.parametrize("name", CORPUS)
def test_every_corpus_file_parses_without_errors(name: str) -> None:
    result = corpus(name)
    assert result.jobs
    assert all(job.error == 0 for job in result.jobs)
    assert result.total_errors == 0 and result.failed_jobs == ()
    assert result.verify_errors == () and result.messages == ()


def test_corpus_has_no_unlisted_fio_files() -> None:
    assert available_corpus_names("fio") <= set(CORPUS)


def test_randread_qd1_sata_ssd() -> None:
    result = corpus(QD1)
    assert result.version == "fio-3.1"
    (job,) = result.jobs
    assert job.read is not None
    assert job.read.iops == pytest.approx(6614, abs=1)
    assert job.read.lat_mean_ns == pytest.approx(148_000, rel=0.01)  # ~148 us
    assert job.read.io_bytes == 1625501696
    assert job.read.bw_bytes_per_s == 26456 * 1024
    assert job.read.runtime_ms == 60001
    assert job.read.p99_ns == 142336
    assert job.job_options["rw"] == "randread"
    assert [(d.name, d.util_pct) for d in result.disk_util] == [("sdb", 86.082113)]


def test_randwrite_qd16_saturated() -> None:
    (job,) = corpus(QD16).jobs
    assert job.name == "random-read"  # upstream naming quirk: rw=randwrite
    assert job.job_options["rw"] == "randwrite"
    assert job.write is not None and job.read is not None
    assert job.write.iops == pytest.approx(6711, abs=1)
    assert job.read.iops == 0
    assert job.write.lat_mean_ns is not None and 35e6 < job.write.lat_mean_ns < 40e6
    assert corpus(QD16).disk_util[0].util_pct == 100.0


def test_mdraid0_disk_util_members() -> None:
    result = corpus(RAID0)
    (job,) = result.jobs
    assert job.read is not None and job.read.iops == pytest.approx(143416, abs=1)
    names = [d.name for d in result.disk_util]
    assert names == ["md0", "sdd", "sdb", "sdc"]
    md0 = result.disk_util[0]
    assert md0.util_pct == 0.0 and md0.aggr_util_pct == pytest.approx(99.8, abs=0.01)
    assert all(d.util_pct is not None and d.util_pct > 99.7 for d in result.disk_util[1:])


def test_fio_2_17_schema_is_converted_to_bytes_and_ns() -> None:
    result = corpus(GCE)
    assert result.disk_util == ()
    read_job, write_job = result.jobs
    assert read_job.read is not None and write_job.write is not None
    assert read_job.read.iops == pytest.approx(8087, abs=1)
    assert write_job.write.iops == pytest.approx(2457, abs=1)
    # fio 2.x writes io_bytes in KiB and latencies in us.
    assert read_job.read.io_bytes == 1294256 * 1024
    assert read_job.read.lat_mean_ns == pytest.approx(245_531, abs=1)
    assert read_job.read.p99_ns == 1352 * 1000


def test_fio_2_1_4_legacy_multi_job_schema() -> None:
    result = corpus(LEGACY)
    assert result.version == "fio-2.1.4"
    assert [j.name for j in result.jobs] == [
        "sequential_write", "sequential_read", "random_write_test", "random_read_test",
        "random_read_test_parallel"]
    random_read = result.jobs[3].read
    assert random_read is not None
    assert random_read.iops == 317
    assert random_read.p99_ns == 3728 * 1000
    assert random_read.clat_mean_ns == pytest.approx(3117.62 * 1000)
    seq_write = result.jobs[0].write
    assert seq_write is not None and seq_write.runtime_ms is not None
    # KiB -> bytes: io_bytes agrees with bandwidth x runtime.
    assert seq_write.io_bytes == 361984 * 1024
    assert seq_write.io_bytes == pytest.approx(
        seq_write.bw_bytes_per_s * seq_write.runtime_ms / 1000, rel=0.01)
    assert [(d.name, d.util_pct) for d in result.disk_util] == [("sdb", 97.54)]


def test_local_verify_run_is_clean() -> None:
    result = parse_fio(local_text("fio.json"))
    assert result.version == "fio-3.33"
    (job,) = result.jobs
    assert (job.name, job.error) == ("verify-crc32c", 0)
    assert job.job_options["verify"] == "crc32c"
    assert job.write is not None and job.read is not None
    assert job.write.io_bytes == 16 * 1024**2
    assert job.read.io_bytes == 16 * 1024**2  # the verification read-back
    assert job.write.iops > 0 and job.write.bw_bytes_per_s > 0
    assert result.total_errors == 0 and result.verify_errors == ()
    assert [d.name for d in result.disk_util] == ["vda"]


def test_local_verify_failure_with_stderr_before_json() -> None:
    result = parse_fio(local_text("fio-verify-fail.txt"))
    (job,) = result.jobs
    assert job.error == 84  # EILSEQ: what fio sets on a verify failure
    assert result.failed_jobs == (job,)
    assert result.total_errors == 1
    (verify,) = result.verify_errors
    assert verify.startswith("verify: bad magic header 0, wanted acca")
    assert result.messages[1].startswith("fio: pid=")
    assert "err=84" in result.messages[1]


def test_warnings_before_and_after_json_are_kept() -> None:
    text = ("fio: this platform does not support process shared mutexes, forcing use of threads\n"
            + local_text("fio.json") + "\nfio: file hash not empty on exit\n")
    result = parse_fio(text)
    assert result.jobs[0].error == 0
    assert result.messages == (
        "fio: this platform does not support process shared mutexes, forcing use of threads",
        "fio: file hash not empty on exit",
    )


def test_continue_on_error_counts() -> None:
    document = json.loads(local_text("fio.json"))
    document["jobs"][0].update({"error": 5, "total_err": 12, "first_error": 5})
    result = parse_fio(json.dumps(document))
    assert result.jobs[0].total_err == 12 and result.jobs[0].first_error == 5
    assert result.total_errors == 12


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty output"),
        ("fio: failed parsing rw=bogus\n", "found no line starting with '{'"),
        ('{\n  "fio version" : "fio-3.33",\n  "jobs" : [\n', "truncated JSON at line 4"),
        ("{\n}\n", "no 'jobs' key"),
        ('{"jobs": {}}', "expected a JSON array"),
        ('{"jobs": [{"jobname": "x"}]}', "missing 'jobname' or 'error'"),
        ('{"jobs": [{"jobname": "x", "error": 0, "read": {"io_bytes": 1}}]}', "missing 'io_bytes'"),
        ('{"jobs": [], "disk_util": [{"util": 1}]}', "without a name"),
        ('{"jobs": [{"jobname": "x", "error": "none"}]}', "expected an integer"),
        ('{"jobs": [' + "1" * 5000 + "]}", "unreadable JSON"),
    ],
)
def test_malformed_input_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_fio(text)
    assert str(info.value).startswith("fio: ") and info.value.tool == "fio"


def test_truncated_capture_is_a_parse_error() -> None:
    text = local_text("fio.json")
    for cut in (5, 400, len(text) // 2, len(text) - 4):
        with pytest.raises(ParseError, match="truncated JSON"):
            parse_fio(text[:cut])


def _check(text: str) -> None:
    try:
        assert isinstance(parse_fio(text), FioResult)
    except ParseError as error:
        assert error.tool == "fio"


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
    document = json.loads(corpus_text("fio", LEGACY))
    _check(json.dumps(mutate(data, document, JSON_VALUES)))

