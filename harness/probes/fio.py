"""`fio --output-format=json` -> FioResult.

fio may print warnings and verify errors (stderr, when captured with 2>&1) before the
JSON: everything before the first line starting with "{" is kept as `messages`, and the
"verify: ..." ones also as `verify_errors`. Both schemas are read:

- fio 3.x: `clat_ns`/`lat_ns` in ns, `io_bytes` in bytes (plus `io_kbytes`).
- fio 2.x: `clat`/`lat` in microseconds, and `io_bytes` actually in KiB (no `io_kbytes`).

`bw` is KiB/s in both; newer fio also writes `bw_bytes`.

With `--status-interval=N` fio prints one whole JSON document every N seconds and its
result last: the last document is the result, and the running totals of all of them
become `intervals` (throughput per interval, the series a plot shows). Every report's
totals count from the job's start, so an interval's figure is the difference of two.
Chosen over `--write_bw_log` files: the series arrives in the command's own stdout over
any Channel (local, SSH, serial), with nothing to fetch or remove on the host; the price
is a whole report (~7 KB) per interval, so the stages space them (plots.series_step_s).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

from harness.probes._common import (
    JsonDict,
    expect_dict,
    expect_list,
    fail,
    json_error_detail,
    opt_dict,
    opt_float,
    opt_int,
    opt_str,
)

TOOL = "fio"


@dataclass(frozen=True)
class FioIo:
    """One direction of one job; latencies in ns, p99 is the completion-latency p99."""

    io_bytes: int
    bw_bytes_per_s: float
    iops: float
    runtime_ms: int | None
    total_ios: int | None
    lat_mean_ns: float | None
    lat_max_ns: float | None
    clat_mean_ns: float | None
    p99_ns: float | None


@dataclass(frozen=True)
class FioJob:
    """`error` is fio's errno for the job (0 = fine; 84 EILSEQ is a verify failure)."""

    name: str
    error: int
    total_err: int | None
    first_error: int | None
    read: FioIo | None
    write: FioIo | None
    trim: FioIo | None
    job_options: dict[str, str]

    @property
    def iops(self) -> float:
        return sum(io.iops for io in (self.read, self.write, self.trim) if io is not None)


@dataclass(frozen=True)
class FioDiskUtil:
    name: str
    util_pct: float | None
    read_ios: int | None
    write_ios: int | None
    aggr_util_pct: float | None = None


@dataclass(frozen=True)
class FioInterval:
    """All jobs' throughput between two status reports; seconds since the jobs started."""

    start_s: float
    end_s: float
    read_bytes_per_s: float
    write_bytes_per_s: float


@dataclass(frozen=True)
class FioResult:
    version: str | None
    jobs: tuple[FioJob, ...]
    disk_util: tuple[FioDiskUtil, ...]
    messages: tuple[str, ...]
    verify_errors: tuple[str, ...]
    intervals: tuple[FioInterval, ...] = ()

    @property
    def total_errors(self) -> int:
        """Errors over all jobs: total_err where fio counted them, else 1 per failed job."""
        total = 0
        for job in self.jobs:
            if job.total_err is not None and job.total_err > 0:
                total += job.total_err
            elif job.error != 0:
                total += 1
        return total

    @property
    def failed_jobs(self) -> tuple[FioJob, ...]:
        return tuple(job for job in self.jobs if job.error != 0)


def parse_fio(text: str) -> FioResult:
    """Parse fio's JSON output (one document, or a --status-interval stream of them),
    tolerating text lines before, between and after the JSON."""
    documents, messages = _split(text)
    if not documents:
        if not text.strip():
            fail(TOOL, "expected a JSON object, got empty output")
        fail(TOOL, "expected a JSON object, found no line starting with '{'")
    data = _document(documents[-1], "top level")
    jobs = expect_list(TOOL, data["jobs"], "jobs")
    disk_util = expect_list(TOOL, data.get("disk_util", []), "disk_util")
    return FioResult(
        version=opt_str(TOOL, data, "fio version", "top level"),
        jobs=tuple(_job(job, f"jobs[{i}]") for i, job in enumerate(jobs)),
        disk_util=tuple(_disk(disk, f"disk_util[{i}]") for i, disk in enumerate(disk_util)),
        messages=tuple(messages),
        verify_errors=tuple(m for m in messages if m.startswith("verify:")),
        intervals=_intervals(documents),
    )


def _split(text: str) -> tuple[list[object], list[str]]:
    """The JSON documents (each starting a line) and the other non-blank lines, in order."""
    decoder = json.JSONDecoder()
    documents: list[object] = []
    messages: list[str] = []
    pos = 0
    while pos < len(text):
        newline = text.find("\n", pos)
        line_end = len(text) if newline < 0 else newline + 1
        line = text[pos:line_end]
        stripped = line.lstrip()
        if not stripped.startswith("{"):
            if line.strip():
                messages.append(line.strip())
            pos = line_end
            continue
        try:
            document, pos = decoder.raw_decode(text, pos + len(line) - len(stripped))
        except json.JSONDecodeError as exc:
            fail(TOOL, json_error_detail(text, exc))
        except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit limit
            fail(TOOL, f"expected a JSON object, got unreadable JSON: {exc}"[:200])
        except RecursionError:
            fail(TOOL, "expected a JSON object, got JSON nested too deeply")
        documents.append(document)
    return documents, messages


def _document(value: object, where: str) -> JsonDict:
    data = expect_dict(TOOL, value, where)
    if "jobs" not in data:
        fail(TOOL, f"{where}: no 'jobs' key (not fio --output-format=json?)")
    return data


def _intervals(documents: list[object]) -> tuple[FioInterval, ...]:
    """Throughput between consecutive reports; none for a single report or without times.

    The first interval starts when the jobs started (the first report's time less its
    longest job_runtime). An interval whose clock or totals went backwards is left out:
    no throughput can be read from it."""
    if len(documents) < 2:
        return ()
    points: list[tuple[int, int, int]] = []  # (ms, read bytes, write bytes) so far
    first_runtime_ms = 0
    for n, value in enumerate(documents):
        where = f"report {n + 1} of {len(documents)}"
        data = _document(value, where)
        stamp = opt_int(TOOL, data, "timestamp_ms", where)
        if stamp is None:  # an older fio without timestamp_ms: no clock for the reports
            return ()
        jobs = expect_list(TOOL, data["jobs"], f"{where}: jobs")
        parsed = [_job(job, f"{where}: jobs[{i}]") for i, job in enumerate(jobs)]
        if n == 0:
            runtimes = [opt_int(TOOL, expect_dict(TOOL, job, f"{where}: jobs[{i}]"),
                                "job_runtime", f"{where}: jobs[{i}]")
                        for i, job in enumerate(jobs)]
            first_runtime_ms = max((r for r in runtimes if r is not None and r > 0),
                                   default=0)
        point = (stamp, sum(j.read.io_bytes for j in parsed if j.read is not None),
                 sum(j.write.io_bytes for j in parsed if j.write is not None))
        if any(abs(v) >= 2**64 for v in point):  # fio counts in 64 bits
            fail(TOOL, f"{where}: timestamp_ms or io_bytes beyond 64 bits")
        points.append(point)
    origin = points[0][0] - first_runtime_ms
    if first_runtime_ms > 0:
        points.insert(0, (origin, 0, 0))
    intervals = []
    for (t0, r0, w0), (t1, r1, w1) in itertools.pairwise(points):
        if t1 <= t0 or r1 < r0 or w1 < w0:
            continue
        seconds = (t1 - t0) / 1000
        intervals.append(FioInterval(start_s=(t0 - origin) / 1000, end_s=(t1 - origin) / 1000,
                                     read_bytes_per_s=(r1 - r0) / seconds,
                                     write_bytes_per_s=(w1 - w0) / seconds))
    return tuple(intervals)


def _job(value: object, where: str) -> FioJob:
    job = expect_dict(TOOL, value, where)
    name = opt_str(TOOL, job, "jobname", where)
    error = opt_int(TOOL, job, "error", where)
    if name is None or error is None:
        fail(TOOL, f"{where}: missing 'jobname' or 'error' (truncated?)")
    options = opt_dict(TOOL, job, "job options", where) or {}
    return FioJob(
        name=name,
        error=error,
        total_err=opt_int(TOOL, job, "total_err", where),
        first_error=opt_int(TOOL, job, "first_error", where),
        read=_io(job, "read", where),
        write=_io(job, "write", where),
        trim=_io(job, "trim", where),
        job_options={str(k): str(v) for k, v in options.items()},
    )


def _io(job: JsonDict, key: str, where: str) -> FioIo | None:
    io = opt_dict(TOOL, job, key, where)
    if io is None:
        return None
    where = f"{where}.{key}"
    legacy = "io_kbytes" not in io and "clat_ns" not in io and "lat_ns" not in io
    io_bytes = opt_int(TOOL, io, "io_bytes", where)
    bw_kib = opt_float(TOOL, io, "bw", where)
    iops = opt_float(TOOL, io, "iops", where)
    if io_bytes is None or bw_kib is None or iops is None:
        fail(TOOL, f"{where}: missing 'io_bytes', 'bw' or 'iops' (truncated?)")
    bw_bytes = opt_float(TOOL, io, "bw_bytes", where)
    if legacy:
        io_bytes *= 1024
    lat, clat = _latency(io, "lat", where), _latency(io, "clat", where)
    p99 = _p99(io, "clat", where)
    if p99 is None:
        p99 = _p99(io, "lat", where)
    return FioIo(
        io_bytes=io_bytes,
        bw_bytes_per_s=bw_bytes if bw_bytes is not None else bw_kib * 1024,
        iops=iops,
        runtime_ms=opt_int(TOOL, io, "runtime", where),
        total_ios=opt_int(TOOL, io, "total_ios", where),
        lat_mean_ns=_stat(lat, "mean", where),
        lat_max_ns=_stat(lat, "max", where),
        clat_mean_ns=_stat(clat, "mean", where),
        p99_ns=p99,
    )


def _latency(io: JsonDict, kind: str, where: str) -> tuple[JsonDict, float] | None:
    """The latency block and its scale to ns: `<kind>_ns` (ns) or legacy `<kind>` (us)."""
    block = opt_dict(TOOL, io, f"{kind}_ns", where)
    if block is not None:
        return block, 1.0
    block = opt_dict(TOOL, io, kind, where)
    if block is not None:
        return block, 1000.0
    return None


def _stat(latency: tuple[JsonDict, float] | None, key: str, where: str) -> float | None:
    if latency is None:
        return None
    block, scale = latency
    value = opt_float(TOOL, block, key, where)
    return None if value is None else value * scale


def _p99(io: JsonDict, kind: str, where: str) -> float | None:
    latency = _latency(io, kind, where)
    if latency is None:
        return None
    block, scale = latency
    percentiles = opt_dict(TOOL, block, "percentile", where)
    if percentiles is None:
        return None
    for key in percentiles:
        try:
            point = float(key)
        except ValueError:
            continue
        if abs(point - 99.0) < 1e-6:
            number = opt_float(TOOL, percentiles, key, f"{where}.{kind}.percentile")
            return None if number is None else number * scale
    return None


def _disk(value: object, where: str) -> FioDiskUtil:
    disk = expect_dict(TOOL, value, where)
    name = opt_str(TOOL, disk, "name", where)
    if name is None:
        fail(TOOL, f"{where}: disk_util entry without a name")
    return FioDiskUtil(
        name=name,
        util_pct=opt_float(TOOL, disk, "util", where),
        read_ios=opt_int(TOOL, disk, "read_ios", where),
        write_ios=opt_int(TOOL, disk, "write_ios", where),
        aggr_util_pct=opt_float(TOOL, disk, "aggr_util", where),
    )
