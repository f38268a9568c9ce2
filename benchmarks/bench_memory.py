"""Controller memory over a long console stream: RSS must stay flat (no growth per line).

A burn-in watches each host's serial console for hours. This pushes `--minutes` of
console output at `--baud` (115200: ~11.5 KB/s, 41 MB an hour) through the path a run
uses, compressed in time (`--rate` bytes/s): a local TCP console, SerialChannel (reader
thread, timestamped console log), ConsoleWatch with all death patterns and a BootTracker,
and the console into the host's EventLog (harness.host.subscribe_console: one event per
read, one per line before 2026-11-22). The process's
RSS is sampled every `--sample` seconds; the figure is the slope of a least-squares line
through the samples after the first `--warmup` fraction (MB per hour of console at the
given baud) and the growth from the end of the warm-up to the end.

    .venv/bin/python benchmarks/bench_memory.py [--minutes 60] [--rate 2000000]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from harness.console.boot import BootPolicy, BootTracker
from harness.console.serial import SerialChannel
from harness.console.watch import ConsoleWatch
from harness.events import EventLog
from harness.host import subscribe_console

MB = 1 << 20
_LINES = [
    "stress-ng: info:  [1234] dispatching hogs: 2 cpu, 2 matrix, 2 cache",
    "[  OK  ] Started \x1b[0;1;39mSession 3 of User root\x1b[0m.",
    "EXT4-fs (sda1): mounted filesystem with ordered data mode. Quota mode: none.",
    "nvme nvme0: 8/0/0 default/read/poll queues",
    "e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: None",
    "audit: type=1334 audit(1732262400.123:42): prog-id=17 op=LOAD",
]


def console_block(size: int) -> bytes:
    """About `size` bytes of CR LF console lines, each with its own kernel timestamp."""
    out = bytearray()
    n = 0
    while len(out) < size:
        out += f"[{n / 997:12.6f}] {_LINES[n % len(_LINES)]} #{n}\r\n".encode()
        n += 1
    return bytes(out)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PacedConsole:
    """A console server that sends `total` bytes at `rate` bytes/s, then `marker`."""

    def __init__(self, total: int, rate: float, marker: bytes) -> None:
        self.total, self.rate, self.marker = total, rate, marker
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.sent = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        block = console_block(MB)
        conn, _ = self.server.accept()
        with conn:
            tick = 0.05
            chunk = max(1, int(self.rate * tick))
            started = time.monotonic()
            offset = 0
            while self.sent < self.total:
                piece = block[offset:offset + chunk] or block[:chunk]
                offset = (offset + len(piece)) % len(block)
                conn.sendall(piece)
                self.sent += len(piece)
                time.sleep(max(0.0, started + self.sent / self.rate - time.monotonic()))
            conn.sendall(b"\r\n" + self.marker + b"\r\n")
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):
                pass

    def close(self) -> None:
        self.server.close()
        self.thread.join(timeout=10)


def slope(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS (bytes) over time (s)."""
    xs = [t for t, _ in samples]
    ys = [float(r) for _, r in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def run(minutes: float, baud: int, rate: float, sample_s: float, warmup: float) -> None:
    line_rate = baud / 10  # bytes/s on the wire (8N1)
    total = int(minutes * 60 * line_rate)
    marker = b"VET-BENCH-MEMORY-END"
    seen = threading.Event()

    def find_marker(lines: list[str], at: float, offset: int | None) -> None:
        if any("VET-BENCH-MEMORY-END" in line for line in lines):
            seen.set()

    console = PacedConsole(total, rate, marker)
    samples: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        channel = SerialChannel("bench", f"socket://127.0.0.1:{console.port}",
                                console_log=Path(tmp) / "console.log")
        channel.open()
        events = EventLog(Path(tmp) / "events.jsonl", "bench", "bench")
        watch = ConsoleWatch(host="bench", tracker=BootTracker("bench", BootPolicy(deadlines={})))
        subscribe_console(channel, watch, events)
        channel.subscribe_lines(find_marker)
        started = time.monotonic()
        deadline = started + total / rate * 3 + 60
        while not seen.wait(sample_s):
            samples.append((time.monotonic() - started, rss_bytes()))
            if time.monotonic() > deadline:
                raise SystemExit(f"the end marker never arrived ({console.sent} bytes sent)")
        samples.append((time.monotonic() - started, rss_bytes()))
        wall = time.monotonic() - started
        channel.close()
        events.close()
        log_size = (Path(tmp) / "console.log").stat().st_size
    console.close()
    steady = samples[int(len(samples) * warmup):]
    per_s = slope(steady)
    console_s_per_s = rate / line_rate  # console seconds per wall second
    print(f"{total / MB:.0f} MB of console ({minutes:g} min at {baud} baud) in {wall:.0f} s "
          f"({rate / MB:.2f} MB/s, {console_s_per_s:.0f}x real time); console log "
          f"{log_size / MB:.0f} MB; load average {os.getloadavg()[0]:.1f}")
    print(f"RSS: start {samples[0][1] / MB:.1f} MB, after warm-up {steady[0][1] / MB:.1f} MB, "
          f"end {samples[-1][1] / MB:.1f} MB, max {max(r for _, r in samples) / MB:.1f} MB")
    growth = (steady[-1][1] - steady[0][1]) / MB
    per_hour = per_s * 3600 / console_s_per_s / MB
    print(f"growth after warm-up: {growth:+.2f} MB; slope {per_hour:+.3f} MB per console hour "
          f"({len(steady)} samples)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60, help="console minutes to push")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--rate", type=float, default=2e6, help="bytes/s pushed (compression)")
    parser.add_argument("--sample", type=float, default=0.5, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction left out of the fit")
    args = parser.parse_args()
    run(args.minutes, args.baud, args.rate, args.sample, args.warmup)


if __name__ == "__main__":
    main()
