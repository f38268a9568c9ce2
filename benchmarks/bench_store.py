"""Run-store and event-log write throughput with several writer processes (as xdist workers).

Two parts, each run with the store's write lock (harness/write_lock.py, "flock") and
without it (SQLite's busy handler alone, as before: "busy"), alternating, side by side:

* saturate: each writer opens its own Store on one SQLite file and writes events as
  fast as it can (one transaction each). Rows per second and each write's latency.
* realistic: each writer is one host of a run for `--seconds`: `--lines` console/command
  lines per second into its own EventLog (JSON lines, flushed per event) and `--store-rate`
  store writes per second (transitions, results, measurements, events in turn). The worst
  wait any writer saw is the figure behind "no run waits on SQLite".

    .venv/bin/python benchmarks/bench_store.py [--writers 1 2 4 8] [--rows 2000]
        [--seconds 10] [--lines 200] [--store-rate 5] [--parts saturate realistic]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from multiprocessing.queues import Queue as MPQueue
from pathlib import Path
from typing import Any, TypeAlias

from harness.events import EventLog
from harness.models import Measurement
from harness.store import Store

#: Each writer's latencies, by part, back to the parent.
Results: TypeAlias = "MPQueue[dict[str, list[float]]]"


class _NoLock:
    """Stands in for WriteLock: writers meet on SQLite's busy handler only (before)."""

    def acquire(self, timeout_s: float) -> None: ...
    def release(self) -> None: ...
    def close(self) -> None: ...


def _open(path: str, lock: bool) -> Store:
    store = Store(path)
    if not lock:
        store._write_lock.close()
        store._write_lock = _NoLock()  # type: ignore[assignment]
    return store


def _saturate(path: str, worker: int, rows: int, lock: bool, queue: Results) -> None:
    store = _open(path, lock)
    latencies = []
    for i in range(rows):
        started = time.perf_counter()
        store.add_event("bench", f"host{worker:03d}", "ssh", "line", {"text": f"line {i}" * 4})
        latencies.append(time.perf_counter() - started)
    store.close()
    queue.put({"store": latencies})


def _realistic(path: str, run_dir: str, worker: int, seconds: float, lines: int,
               store_rate: float, lock: bool, queue: Results) -> None:
    """One host's writes at a paced rate (a benchmark may pace itself with sleeps)."""
    host = f"host{worker:03d}"
    store = _open(path, lock)
    events = EventLog(Path(run_dir) / host / "events.jsonl", "bench", host)
    store_lat: list[float] = []
    event_lat: list[float] = []
    tick = 0.02
    started = time.monotonic()
    next_store = started
    n = 0
    while (now := time.monotonic()) - started < seconds:
        for _ in range(max(1, round(lines * tick))):
            t0 = time.perf_counter()
            events.emit("ssh", "line", "c0ffee", stream="stdout", text=f"stress-ng: info: {n}")
            event_lat.append(time.perf_counter() - t0)
        if now >= next_store:
            next_store += 1.0 / store_rate
            t0 = time.perf_counter()
            kind = len(store_lat) % 4
            if kind == 0:
                store.record_test("bench", host, "cpu", f"t::{n}", "passed", time.time(), 1.0)
            elif kind == 1:
                store.add_measurements("bench", host, "cpu",
                                       [Measurement("bogo_ops", float(n), "ops")])
            elif kind == 2:
                store.add_event("bench", host, "harness", "notification", {"n": n})
            else:
                store.add_record("bench", host, "cpu", "sample", {"n": n, "temp_c": 51.0})
            store_lat.append(time.perf_counter() - t0)
        n += 1
        time.sleep(max(0.0, started + n * tick - time.monotonic()))
    events.close()
    store.close()
    queue.put({"store": store_lat, "events": event_lat})


def _spawn(target: Any, args_for: list[tuple[Any, ...]]) -> tuple[list[dict[str, list[float]]],
                                                                   float]:
    ctx = multiprocessing.get_context("fork")
    queue: Results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, queue)) for args in args_for]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return results, time.perf_counter() - started


def _stats(latencies: list[float]) -> dict[str, float]:
    latencies = sorted(latencies)
    return {
        "n": len(latencies),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "p999_ms": latencies[int(len(latencies) * 0.999)] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


def saturate(writers: int, rows: int, lock: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.sqlite")
        Store(path).close()
        results, wall = _spawn(_saturate, [(path, w, rows, lock) for w in range(writers)])
        with Store(path) as store:
            written = store.query("SELECT COUNT(*) AS n FROM events")[0]["n"]
    assert written == writers * rows, f"lost rows: {written} of {writers * rows}"
    return {"rows_per_s": written / wall,
            **_stats([x for r in results for x in r["store"]])}


def realistic(writers: int, seconds: float, lines: int, store_rate: float, lock: bool
              ) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.sqlite")
        Store(path).close()
        results, _ = _spawn(_realistic, [(path, tmp, w, seconds, lines, store_rate, lock)
                                         for w in range(writers)])
    return {part: _stats([x for r in results for x in r[part]]) for part in ("store", "events")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rows", type=int, default=2000, help="rows per writer (saturate)")
    parser.add_argument("--seconds", type=float, default=10, help="length of a realistic run")
    parser.add_argument("--lines", type=int, default=200, help="event-log lines/s per writer")
    parser.add_argument("--store-rate", type=float, default=5, help="store writes/s per writer")
    parser.add_argument("--parts", nargs="+", default=["saturate", "realistic"],
                        choices=["saturate", "realistic"])
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if "saturate" in args.parts:
        print(f"\nsaturate: {args.rows} store events per writer, as fast as they go")
        print(f"{'writers':>7} {'lock':>5} {'rows/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'p99.9 ms':>8} {'max ms':>8}")
        for writers in args.writers:
            for lock in (False, True):
                r = saturate(writers, args.rows, lock)
                print(f"{writers:>7} {'flock' if lock else 'busy':>5} {r['rows_per_s']:>8.0f} "
                      f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['p999_ms']:>8.1f} "
                      f"{r['max_ms']:>8.1f}", flush=True)
    if "realistic" in args.parts:
        print(f"\nrealistic: {args.seconds:g} s, {args.lines} event-log lines/s and "
              f"{args.store_rate:g} store writes/s per writer")
        print(f"{'writers':>7} {'lock':>5} {'part':>6} {'writes':>7} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>8}")
        for writers in args.writers:
            for lock in (False, True):
                res = realistic(writers, args.seconds, args.lines, args.store_rate, lock)
                for part, r in res.items():
                    print(f"{writers:>7} {'flock' if lock else 'busy':>5} {part:>6} "
                          f"{r['n']:>7.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
                          f"{r['p999_ms']:>8.1f} {r['max_ms']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
