"""Serial console: stream throughput and command round trip, vet next to labgrid.

1. Console stream: boot-log-like lines with a marker at the end, pushed by a local TCP
   server (as QEMU's serial socket or ser2net push a console) into `socket://`; time
   until expect_exact finds the marker (a session with keep_before=False: the wait
   needs no `before`). MB/s at several sizes shows whether it stays linear. Rows:
     vet SerialChannel       reader thread + timestamped console log + pexpect session
                             (delayafterread=None, maxread 1 MiB, search window 2 MiB)
     vet + ConsoleWatch      the same with harness.console.watch matching every line
     vet + watch + tracker   ConsoleWatch with a BootTracker (following the boot)
     vet + watch + tracker + events  the same with a run's event log subscribed too
                             (harness.host.log_console: one JSON event per console read;
                             one per console line before it was batched)
     pexpect fdspawn, tuned  the bare configuration vet uses, no thread, no log
     pexpect fdspawn, defaults  maxread 2000, delayafterread 0.1 ms (the ~7 MB/s cap)
     labgrid SerialDriver    labgrid's driver + ConsoleExpectMixin.expect (one byte a
                             read), only at the small sizes it finishes
2. Round trip of `true` over a real login shell behind socat (nodelay), per command:
     vet SerialChannel.run   marker protocol, subshell, exit status
     bare marker             pexpect fdspawn: printf a marker, expect_exact it (the floor)
     bare framed `true`      pexpect fdspawn: the very line run() sends (subshell, trap,
                             markers), expect_exact its end marker: the shell's share
     vet, instant console    SerialChannel.run against a local thread that answers each
                             framed line with its two markers at once: vet's own share
     labgrid ShellDriver.run labgrid's shell driver on the same kind of endpoint

    .venv/bin/python benchmarks/bench_serial.py [--sizes 1 5 10 50] [--labgrid-kib 16 64 256]
        [--runs 500] [--repeat 3] [--parts stream round-trip] [--baseline DIR]
        [--clock wall|cpu] [--rows NAME ...]

--rows times only the stream rows whose name starts with one of the NAMEs (e.g.
`--rows "vet + watch + tracker + events"`).

--baseline DIR times each vet stream row twice, alternately: with the harness of DIR (an
older commit unpacked with `git archive`) and with this checkout's, each run in a fresh
interpreter; the DIR figures print as "[before]" rows.

--clock cpu times the stream rows in CPU seconds of the reading side's threads (the
caller's and, for vet, the channel's reader thread), leaving out the pushing server and
the time spent waiting for a core: less skewed by other work on a shared machine. On an
idle machine the two clocks agree (the reading threads take turns under one GIL).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
import pexpect.fdpexpect

REPO = Path(__file__).resolve().parents[1]
# The tests' console endpoint (socat + login shell); VET_BENCH_TREE: another checkout's
# harness and tests, for --baseline.
sys.path.insert(0, os.environ.get("VET_BENCH_TREE", str(REPO)))

from harness.console.boot import BootPolicy, BootTracker  # noqa: E402
from harness.console.markers import frame  # noqa: E402
from harness.console.serial import (  # noqa: E402
    MAXREAD,
    SEARCH_WINDOW,
    SerialChannel,
    frame_for_console,
)
from harness.console.watch import ConsoleWatch  # noqa: E402
from tests.fixtures.console_pusher import Pusher  # noqa: E402
from tests.fixtures.serial_bridge import (  # noqa: E402
    PASSWORD,
    USER,
    SerialEndpoint,
    logged_in,
    start_tcp_endpoint,
)

MB = 1 << 20
_SUBSYSTEMS = [
    "ACPI: PCI Interrupt Link [LNKC] enabled at IRQ 11",
    "pci 0000:00:1f.2: reg 0x24: [mem 0xfebd1000-0xfebd1fff]",
    "EXT4-fs (sda1): mounted filesystem with ordered data mode. Quota mode: none.",
    "systemd[1]: Started Journal Service.",
    "usb 1-1: new high-speed USB device number 2 using xhci_hcd",
    "nvme nvme0: 8/0/0 default/read/poll queues",
    "random: crng init done",
    "e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: None",
]


def boot_log(size: int) -> tuple[bytes, bytes]:
    """`size` bytes of console lines (CR LF, as a serial console sends), then a marker."""
    lines = []
    length = 0
    n = 0
    while length < min(size, MB):
        line = f"[{n / 997:12.6f}] {_SUBSYSTEMS[n % len(_SUBSYSTEMS)]}\r\n".encode()
        lines.append(line)
        length += len(line)
        n += 1
    block = b"".join(lines)
    body = (block * (size // len(block) + 1))[:size]
    marker = b"VET-BENCH-END-" + secrets.token_hex(6).encode()
    return body + marker + b"\r\n", marker


class Clock:
    """Wall time, or the CPU time of the given threads (`--clock cpu`)."""

    cpu = False

    def __init__(self, *threads: threading.Thread) -> None:
        self.clocks = [time.pthread_getcpuclockid(t.ident or 0) for t in threads]

    def now(self) -> float:
        if not self.cpu:
            return time.perf_counter()
        return sum(time.clock_gettime(clock) for clock in self.clocks)


def stream_vet(payload: bytes, marker: bytes, watch: bool = False,
               tracker: bool = False, events: bool = False) -> float:
    pusher = Pusher(payload)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "console.log"
        channel = SerialChannel("bench", f"socket://127.0.0.1:{pusher.port}", console_log=log)
        channel.open()
        if watch:
            boot = BootTracker("bench", BootPolicy(deadlines={})) if tracker else None
            channel.subscribe_lines(ConsoleWatch(host="bench", tracker=boot).feed_lines)
        if events:  # as a run subscribes its event log (harness.host.log_console)
            from harness.events import EventLog
            from harness.host import log_console

            log_console(channel, EventLog(Path(tmp) / "events.jsonl", "bench", "bench"))
        # The channel's reader thread (a private attribute, for the CPU clock only).
        clock = Clock(threading.current_thread(), channel._reader)  # type: ignore[arg-type]
        # The wait needs no `before` (the log and the subscribers have the output):
        # keep_before=False, where the harness has it (not an older one, --baseline).
        keep = ({"keep_before": False}
                if "keep_before" in inspect.signature(channel.console).parameters else {})
        with channel.console(timeout=600, **keep) as con:
            started = clock.now()  # before the go: the reader may start at once
            con.send(b"g")
            con.expect_exact(marker, timeout=600)
            elapsed = clock.now() - started
        channel.close()
        assert log.stat().st_size > len(payload), "the console log missed data"
    pusher.close()
    return elapsed


def stream_pexpect(payload: bytes, marker: bytes, tuned: bool) -> float:
    pusher = Pusher(payload)
    sock = socket.create_connection(("127.0.0.1", pusher.port))
    if tuned:
        spawn = pexpect.fdpexpect.fdspawn(sock.fileno(), timeout=600, maxread=MAXREAD,
                                          searchwindowsize=SEARCH_WINDOW)
        spawn.delayafterread = None
    else:
        spawn = pexpect.fdpexpect.fdspawn(sock.fileno(), timeout=600)
    clock = Clock(threading.current_thread())
    started = clock.now()
    sock.sendall(b"g")
    spawn.expect_exact(marker)
    elapsed = clock.now() - started
    sock.close()
    pusher.close()
    return elapsed


def _labgrid_target(port: int) -> tuple[Any, Any]:
    from labgrid import Target  # type: ignore[import-untyped]
    from labgrid.driver import SerialDriver  # type: ignore[import-untyped]
    from labgrid.resource import NetworkSerialPort  # type: ignore[import-untyped]

    target = Target(f"bench-{port}")
    NetworkSerialPort(target, name=None, host="127.0.0.1", port=port, speed=115200,
                      protocol="raw")
    driver = SerialDriver(target, name=None)
    return target, driver


def stream_labgrid(payload: bytes, marker: bytes) -> float:
    pusher = Pusher(payload)
    target, driver = _labgrid_target(pusher.port)
    target.activate(driver)
    clock = Clock(threading.current_thread())  # labgrid reads in the caller's thread
    started = clock.now()
    driver.write(b"g")
    driver.expect(marker, timeout=600)
    elapsed = clock.now() - started
    target.deactivate_all_drivers()
    pusher.close()
    return elapsed


def _timed(run: Callable[[], object], runs: int) -> dict[str, float]:
    for _ in range(min(20, runs)):
        run()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    times.sort()
    return {"mean_ms": statistics.fmean(times) * 1000, "p50_ms": times[len(times) // 2] * 1000,
            "p99_ms": times[int(len(times) * 0.99)] * 1000}


def round_trip_vet(workdir: Path, runs: int) -> dict[str, float]:
    endpoint = start_tcp_endpoint(workdir)
    channel = logged_in(endpoint.url, workdir, name="bench")
    try:
        return _timed(lambda: channel.run("true", 10), runs)
    finally:
        channel.close()
        endpoint.stop()


def _bare_login(endpoint: SerialEndpoint) -> tuple[socket.socket, Any]:
    """Log in with plain pexpect and turn readline and echo off, as vet's login does."""
    sock = socket.create_connection(("127.0.0.1", endpoint.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    spawn = pexpect.fdpexpect.fdspawn(sock.fileno(), timeout=10, maxread=MAXREAD,
                                      searchwindowsize=SEARCH_WINDOW)
    spawn.delayafterread = None
    spawn.expect_exact(b"login: ")
    spawn.send(USER.encode() + b"\n")
    spawn.expect_exact(b"Password: ")
    spawn.send(PASSWORD.encode() + b"\n")
    spawn.expect(rb"[$#] ")
    sync = frame("true")
    spawn.send(b"set +o emacs; stty -echo; PS1='$ '\n" + sync.line.encode())
    spawn.expect_exact(sync.end_prefix)
    return sock, spawn


def round_trip_bare(workdir: Path, runs: int) -> dict[str, float]:
    endpoint = start_tcp_endpoint(workdir)
    sock, spawn = _bare_login(endpoint)
    counter = iter(range(1 << 30))

    def bare() -> None:
        n = next(counter)
        spawn.send(f"printf '\\036M{n}\\036\\n'\n".encode())
        spawn.expect_exact(f"\x1eM{n}\x1e".encode())

    try:
        return _timed(bare, runs)
    finally:
        sock.close()
        endpoint.stop()


def round_trip_framed(workdir: Path, runs: int) -> dict[str, float]:
    """run("true")'s framed line over plain pexpect: what the shell and the endpoint cost."""
    endpoint = start_tcp_endpoint(workdir)
    sock, spawn = _bare_login(endpoint)

    def framed() -> None:
        line = frame_for_console("true")
        spawn.send(line.line.encode())
        spawn.expect_exact(line.end_prefix + b"0\x1e")

    try:
        return _timed(framed, runs)
    finally:
        sock.close()
        endpoint.stop()


class InstantConsole:
    """A console that answers each framed line with its markers at once (no shell)."""

    BEGIN = re.compile(rb"printf '\\036VET:([0-9a-f]+):B")

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pending = b""
            while data := conn.recv(65536):
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    if found := self.BEGIN.search(line):
                        command_id = found.group(1)
                        conn.sendall(b"\x1eVET:" + command_id + b":B\x1e\r\n")
                        conn.sendall(b"\x1eVET:" + command_id + b":E:0\x1e\r\n$ ")

    def close(self) -> None:
        self.server.close()
        self.thread.join(timeout=10)


def round_trip_instant(workdir: Path, runs: int) -> dict[str, float]:
    """vet's own share of run(): the console answers at once (no shell, no socat)."""
    console = InstantConsole()
    channel = SerialChannel("bench", f"socket://127.0.0.1:{console.port}",
                            console_log=workdir / "console.log")
    channel.open()
    try:
        return _timed(lambda: channel.run("true", 10), runs)
    finally:
        channel.close()
        console.close()


def round_trip_labgrid(workdir: Path, runs: int) -> dict[str, float]:
    from labgrid.driver import ShellDriver

    endpoint = start_tcp_endpoint(workdir)
    target, _ = _labgrid_target(endpoint.port)
    # bash 5.2 wraps its prompt in bracketed-paste escapes: the prompt regex must allow them
    shell = ShellDriver(target, name=None, prompt=r"(?:\x1b\[\?2004h)?\w+@vet-host:\S* ?[$#] ",
                        login_prompt="login: ", username=USER, password=PASSWORD)
    target.activate(shell)
    try:
        return _timed(lambda: shell.run("true"), runs)
    finally:
        target.deactivate_all_drivers()
        endpoint.stop()


VET_STREAMS: dict[str, Callable[[bytes, bytes], float]] = {
    "vet SerialChannel": stream_vet,
    "vet + ConsoleWatch": lambda p, m: stream_vet(p, m, watch=True),
    "vet + watch + tracker": lambda p, m: stream_vet(p, m, watch=True, tracker=True),
    "vet + watch + tracker + events": lambda p, m: stream_vet(p, m, watch=True, tracker=True,
                                                              events=True),
}


def stream_in(tree: Path, name: str, size: int) -> float:
    """Seconds of the vet stream row `name` in a fresh interpreter using `tree`'s harness."""
    env = dict(os.environ, VET_BENCH_TREE=str(tree))
    command = [sys.executable, __file__, "--one", name, str(size), "--clock",
               "cpu" if Clock.cpu else "wall"]
    out = subprocess.run(command, env=env,
                         capture_output=True, text=True, check=True, timeout=3600)
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 10, 50], help="MB")
    parser.add_argument("--labgrid-kib", type=int, nargs="*", default=[16, 64, 256])
    parser.add_argument("--runs", type=int, default=500, help="round trips per row")
    parser.add_argument("--repeat", type=int, default=3,
                        help="stream runs per row; the fastest counts (a shared machine is noisy)")
    parser.add_argument("--parts", nargs="+", choices=["stream", "round-trip"],
                        default=["stream", "round-trip"])
    parser.add_argument("--baseline", type=Path, help="a checkout whose harness to compare with")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="stream rows: wall time, or CPU time of the reading threads")
    parser.add_argument("--rows", nargs="+", metavar="NAME",
                        help="stream rows to time: those whose name starts with a NAME")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # NAME SIZE, for --baseline
    parser.add_argument("--one-round-trip", type=int, help=argparse.SUPPRESS)  # RUNS, likewise
    args = parser.parse_args()
    Clock.cpu = args.clock == "cpu"
    if args.one_round_trip:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(round_trip_vet(Path(tmp), args.one_round_trip)))
        return
    if args.one:
        name, size = args.one[0], int(args.one[1])
        payload, marker = boot_log(size)
        VET_STREAMS[name](payload, marker)  # untimed: a fresh interpreter's heap warms up
        print(VET_STREAMS[name](payload, marker))
        return
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} (other work on the machine skews this);"
          f" {args.clock} clock\n")
    if "stream" in args.parts:
        streams(args)
    if "round-trip" in args.parts:
        round_trips(args)


def streams(args: argparse.Namespace) -> None:
    print("Console stream: expect_exact a marker after N bytes of boot-log lines (socket://)")
    print(f"{'reader':32} {'size':>9} {'seconds':>9} {'MB/s':>9} {'ns/byte':>9}")
    rows: list[tuple[str, int, Callable[[bytes, bytes], float]]] = []
    for name, measure in VET_STREAMS.items():
        rows += [(name, mb * MB, measure) for mb in args.sizes]
    for mb in args.sizes:
        rows.append(("pexpect fdspawn, tuned", mb * MB,
                     lambda p, m: stream_pexpect(p, m, tuned=True)))
    for mb in [s for s in args.sizes if s <= 5]:
        rows.append(("pexpect fdspawn, defaults", mb * MB,
                     lambda p, m: stream_pexpect(p, m, tuned=False)))
    for kib in args.labgrid_kib:
        rows.append(("labgrid SerialDriver", kib * 1024, stream_labgrid))
    if args.rows:
        rows = [row for row in rows if row[0].startswith(tuple(args.rows))]
    for name, size, measure in rows:
        payload, marker = boot_log(size)
        repeat = args.repeat if size >= MB else 1  # labgrid's rows take minutes as it is
        label = f"{size // MB} MB" if size >= MB else f"{size // 1024} KiB"
        if args.baseline is not None and name in VET_STREAMS:
            before, after = [], []
            for _ in range(repeat):  # alternately, so both see the same load
                before.append(stream_in(args.baseline.resolve(), name, size))
                after.append(stream_in(REPO, name, size))
            results = [(f"{name} [before]", min(before)), (name, min(after))]
        else:
            results = [(name, min(measure(payload, marker) for _ in range(repeat)))]
        for row, seconds in results:
            print(f"{row:32} {label:>9} {seconds:9.3f} {size / MB / seconds:9.4g} "
                  f"{seconds / size * 1e9:9.1f}", flush=True)


def round_trip_in(tree: Path, runs: int) -> dict[str, float]:
    """round_trip_vet in a fresh interpreter using `tree`'s harness."""
    env = dict(os.environ, VET_BENCH_TREE=str(tree))
    out = subprocess.run([sys.executable, __file__, "--one-round-trip", str(runs)], env=env,
                         capture_output=True, text=True, check=True, timeout=3600)
    stats: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    return stats


def round_trips(args: argparse.Namespace) -> None:
    print(f"\nRound trip of `true` over a login shell behind socat ({args.runs} runs)")
    print(f"{'channel':28} {'mean ms':>9} {'p50 ms':>9} {'p99 ms':>9}")
    if args.baseline is not None:  # alternately, so both see the same load; lowest mean
        tries: dict[str, list[dict[str, float]]] = {"[before]": [], "": []}
        for _ in range(args.repeat):
            tries["[before]"].append(round_trip_in(args.baseline.resolve(), args.runs))
            tries[""].append(round_trip_in(REPO, args.runs))
        for label, results in tries.items():
            stats = min(results, key=lambda r: r["mean_ms"])
            name = f"vet SerialChannel.run {label}".strip()
            print(f"{name:28} {stats['mean_ms']:9.3f} {stats['p50_ms']:9.3f} "
                  f"{stats['p99_ms']:9.3f}", flush=True)
    labgrid_runs = min(args.runs, 100)
    rows = [("vet, instant console", round_trip_instant, args.runs),
            ("bare marker (pexpect)", round_trip_bare, args.runs),
            ("bare framed true (pexpect)", round_trip_framed, args.runs),
            (f"labgrid ShellDriver.run ({labgrid_runs})", round_trip_labgrid, labgrid_runs)]
    if args.baseline is None:
        rows.insert(0, ("vet SerialChannel.run", round_trip_vet, args.runs))
    for name, trip, runs in rows:
        with tempfile.TemporaryDirectory() as tmp:
            stats = trip(Path(tmp), runs)
        print(f"{name:28} {stats['mean_ms']:9.3f} {stats['p50_ms']:9.3f} "
              f"{stats['p99_ms']:9.3f}", flush=True)


if __name__ == "__main__":
    main()
