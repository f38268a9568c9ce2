"""Console-watch throughput: MB/s of boot-log-like console text through the death strings.

The console of a host under test is matched line by line against every death pattern for
hours; this prints how fast, at several sizes, so "linear in the output" is a figure (the
same MB/s at 1, 10 and 50 MB). Input: the boot transcripts and kernel logs of
tests/data/boot (and the shared corpus when present), repeated; fed the way
SerialChannel's reader hands them over: one read (~64 KiB of lines) per call, the CR of
CR LF line ends dropped unless the read holds a CR elsewhere (then every line keeps its
CR, as the reader does), as a LineBlock (with its joined text and whether it is plain,
which the reader learns writing the log) where the harness has one; and line by line.

    .venv/bin/python benchmarks/bench_console_watch.py [--sizes 1 10 50] [--read-kib 64]
        [--repeat 3] [--clock wall|cpu] [--baseline DIR]

--baseline DIR measures every figure twice, alternately: with the `harness` package of
DIR (e.g. an older commit unpacked with `git archive`) and with this checkout's, each in
a fresh interpreter, fastest of --repeat each; the table shows both side by side.

Rows:
  matching           clean + LineMatcher.scan over DEATH_PATTERNS: the matching itself
  watch              ConsoleWatch.feed_lines (matching, ring, evidence, findings), no tracker
  watch+tracker      with a BootTracker, the host booted (READY) and staying up
  watch+tracker, reboots  the transcripts repeated as they are: a new boot every ~600 lines
  watch, per line    ConsoleWatch.feed, one call per line
  one re alternation for comparison: all death regexes as one regex over each read
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import harness
from harness.console.boot import BootPolicy, BootTracker, LineMatcher, clean_lines
from harness.console.watch import DEATH_PATTERNS, ConsoleWatch

try:  # what SerialChannel's reader hands over since it has one
    from harness.console.boot import LineBlock
except ImportError:  # an older harness (--baseline): plain lists
    LineBlock = None  # type: ignore[assignment,misc]

REPO = Path(__file__).resolve().parents[1]
SOURCES = [
    REPO / "tests/data/boot/qemu-pxe-boot.txt",
    REPO / "tests/data/boot/gce-vm_debian-5.10_boot-dmesg.txt",
    REPO / "tests/data/boot/qemu-ipxe-no-dhcp.txt",
    REPO / "tests/data/boot/kernel-panic-trace.txt",
    REPO.parent / "shared/corpus/kernel-log"
    / "supermicro-as-4125gs-tnrt_2x-h100l_rocky9_boot-dmesg.txt",
]
RESTARTS = ("Linux version", "SeaBIOS (version", "iPXE initialising", "VET-READY")


def source_lines(booted: bool) -> list[str]:
    lines: list[str] = []
    for path in SOURCES:
        if path.is_file():
            lines += path.read_bytes().decode("utf-8", errors="replace").split("\n")
    if booted:  # a host that stays up: no new boot in the stream
        lines = [line for line in lines if not any(mark in line for mark in RESTARTS)]
    return lines


def blocks_of(lines: list[str], megabytes: float, read_bytes: int) -> list[list[str]]:
    """`megabytes` of console text, cut into reads of about `read_bytes`."""
    target = int(megabytes * 1e6)
    blocks: list[list[str]] = []
    block: list[str] = []
    size = total = 0
    while total < target:
        for line in lines:
            block.append(line)
            size += len(line) + 1
            if size >= read_bytes:
                blocks.append(as_read(block))
                total += size
                block, size = [], 0
                if total >= target:
                    break
    return blocks


def as_read(block: list[str]) -> list[str]:
    """The lines as SerialChannel's reader hands them to subscribers: when every CR of the
    read ends a line (CR LF), the CRs are dropped; otherwise the lines keep them. A
    LineBlock where the harness has one (an older one, for --baseline, may not)."""
    text = "\n".join(block)
    crlf = text.count("\r") == text.count("\r\n") + text.endswith("\r")
    lines = text.replace("\r", "").split("\n") if crlf else block
    if LineBlock is None:
        return lines
    joined = "\n".join(lines)
    plain = joined.isascii() and not joined.encode().translate(None, _PLAIN)
    return LineBlock(lines, joined, plain)


_PLAIN = bytes(range(0x20, 0x7F)) + b"\n\t"


CLOCK: Callable[[], float] = time.perf_counter


def measure(feed: Callable[[list[str]], object], blocks: list[list[str]]) -> float:
    megabytes = sum(len(line) + 1 for block in blocks for line in block) / 1e6
    started = CLOCK()
    for block in blocks:
        feed(block)
    return megabytes / (CLOCK() - started)


def booted_watch() -> ConsoleWatch:
    """A watch whose tracker has seen one healthy boot to VET-READY."""
    tracker = BootTracker("bench", BootPolicy(deadlines={}))
    watch = ConsoleWatch(tracker=tracker)
    boot = (REPO / "tests/data/boot/qemu-pxe-boot.txt").read_text(encoding="utf-8").split("\n")
    watch.feed_lines(boot, 0.0)
    assert tracker.ready is not None
    return watch


def matching(blocks: list[list[str]]) -> float:
    matcher = LineMatcher([p.regex for p in DEATH_PATTERNS])
    return measure(lambda block: matcher.scan(clean_lines(block)), blocks)


def watch_only(blocks: list[list[str]]) -> float:
    watch = ConsoleWatch()
    return measure(lambda block: watch.feed_lines(block, 0.0), blocks)


def watch_booted(blocks: list[list[str]]) -> float:
    watch = booted_watch()
    return measure(lambda block: watch.feed_lines(block, 0.0), blocks)


def watch_rebooting(blocks: list[list[str]]) -> float:
    watch = ConsoleWatch(tracker=BootTracker("bench", BootPolicy(deadlines={})))
    return measure(lambda block: watch.feed_lines(block, 0.0), blocks)


def watch_per_line(blocks: list[list[str]]) -> float:
    watch = ConsoleWatch()
    return measure(lambda block: [watch.feed(line, 0.0) for line in block], blocks)


def one_alternation(blocks: list[list[str]]) -> float:
    regex = re.compile("|".join(f"(?:{p.regex})" for p in DEATH_PATTERNS), re.MULTILINE)
    return measure(lambda block: regex.findall("\n".join(clean_lines(block))), blocks)


# name, run, fed the raw transcripts (with their reboots) rather than a host staying up
ROWS: list[tuple[str, Callable[[list[list[str]]], float], bool]] = [
    ("matching", matching, False),
    ("watch", watch_only, False),
    ("watch+tracker", watch_booted, False),
    ("watch+tracker, reboots", watch_rebooting, True),
    ("watch, per line", watch_per_line, False),
    ("one re alternation", one_alternation, False),
]
SLOW = {"watch, per line", "one re alternation"}  # run up to --slow-max MB only


def figure(name: str, size: float, args: argparse.Namespace,
           lines: dict[bool, list[str]]) -> float:
    """MB/s of row `name` at `size` MB: the fastest of --repeat runs."""
    run, raw = next((run, raw) for row, run, raw in ROWS if row == name)
    read_bytes = args.read_kib * 1024
    return max(run(blocks_of(lines[raw], size, read_bytes)) for _ in range(args.repeat))


def figure_in(tree: Path | None, name: str, size: float, args: argparse.Namespace) -> float:
    """figure() in a fresh interpreter importing `harness` from `tree` (None: this one)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree or REPO), env.get("PYTHONPATH", "")])
    command = [sys.executable, __file__, "--one", name, "--sizes", str(size),
               "--read-kib", str(args.read_kib), "--repeat", "1",  # main() repeats
               "--clock", args.clock]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True,
                         timeout=3600)
    return float(out.stdout.split()[-1])


def main() -> None:
    global CLOCK
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 10, 50], help="MB")
    parser.add_argument("--read-kib", type=int, default=64, help="bytes per console read")
    parser.add_argument("--slow-max", type=float, default=10, help="MB for the slow rows")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the fastest "
                        "counts (a shared machine is noisy)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall time, or this process's CPU time (less skewed by load)")
    parser.add_argument("--baseline", type=Path, help="a tree whose harness to compare with")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a single figure, for --baseline
    args = parser.parse_args()
    if args.clock == "cpu":
        CLOCK = time.process_time
    lines = {True: source_lines(booted=False), False: source_lines(booted=True)}
    if args.one:
        figure(args.one, args.sizes[0], args, lines)  # untimed: the fresh heap warms up
        print(figure(args.one, args.sizes[0], args, lines))
        return
    triggers = LineMatcher([p.regex for p in DEATH_PATTERNS]).triggers
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{len(DEATH_PATTERNS)} death patterns, {len(triggers)} literal triggers; reads of "
          f"{args.read_kib} KiB; {args.clock} clock, fastest of {args.repeat}; "
          f"load average {load}")
    trees: list[Path | None] = [None]
    if args.baseline is not None:
        trees = [args.baseline.resolve(), None]
        print(f"before: {trees[0]}/harness; after: {Path(harness.__file__).parent}")
        heads = "".join(f"{f'{size:g} MB':>17}" for size in args.sizes)
        print(f"{'MB/s':<24}{heads}\n{'':<24}" + "   before    after" * len(args.sizes))
    else:
        print(f"harness: {Path(harness.__file__).parent}")
        print(f"{'MB/s':<24}" + "".join(f"{size:>10g} MB" for size in args.sizes))
    for name, _run, _raw in ROWS:
        figures = []
        for size in args.sizes:
            if name in SLOW and size > args.slow_max:
                figures += ["-"] * len(trees)
                continue
            if args.baseline is None:
                figures.append(f"{figure(name, size, args, lines):.1f}")
                continue
            best = {tree: 0.0 for tree in trees}
            for _ in range(args.repeat):  # alternately, so both see the same load
                for tree in trees:
                    best[tree] = max(best[tree], figure_in(tree, name, size, args))
            figures += [f"{best[tree]:.1f}" for tree in trees]
        width = 13 if args.baseline is None else 9
        print(f"{name:<24}" + "".join(f"{figure:>{width}}" for figure in figures), flush=True)


if __name__ == "__main__":
    main()
