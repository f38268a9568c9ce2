"""Run-store write throughput with several writer processes (as xdist workers write).

Each writer opens its own Store on one SQLite file and writes events (one transaction
each, the way HostUnderTest emits them) and test results. Prints rows per second
overall and each write's latency percentiles, so "no run waits on SQLite" is a figure.

    .venv/bin/python benchmarks/bench_store.py [--writers 1 2 4 8] [--rows 2000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from harness.store import Store


def _writer(path: str, worker: int, rows: int, queue: multiprocessing.Queue[list[float]]) -> None:
    store = Store(path)
    latencies = []
    for i in range(rows):
        started = time.perf_counter()
        store.add_event("bench", f"host{worker:03d}", "ssh", "line", {"text": f"line {i}" * 4})
        latencies.append(time.perf_counter() - started)
    store.close()
    queue.put(latencies)


def run(writers: int, rows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.sqlite")
        Store(path).close()
        ctx = multiprocessing.get_context("fork")
        queue: multiprocessing.Queue[list[float]] = ctx.Queue()
        procs = [ctx.Process(target=_writer, args=(path, w, rows, queue)) for w in range(writers)]
        started = time.perf_counter()
        for p in procs:
            p.start()
        latencies = [lat for _ in procs for lat in queue.get(timeout=600)]
        for p in procs:
            p.join()
        wall = time.perf_counter() - started
        with Store(path) as store:
            written = store.query("SELECT COUNT(*) AS n FROM events")[0]["n"]
    assert written == writers * rows, f"lost rows: {written} of {writers * rows}"
    latencies.sort()
    return {
        "writers": writers,
        "rows": written,
        "rows_per_s": written / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rows", type=int, default=2000, help="rows per writer")
    args = parser.parse_args()
    print(f"{'writers':>7} {'rows':>7} {'rows/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for writers in args.writers:
        r = run(writers, args.rows)
        print(f"{r['writers']:>7.0f} {r['rows']:>7.0f} {r['rows_per_s']:>9.0f} "
              f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['max_ms']:>7.1f}")


if __name__ == "__main__":
    main()
