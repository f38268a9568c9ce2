"""Console-watch throughput: MB/s of boot-log-like console text through the death strings.

The console of a host under test is matched line by line against every death pattern for
hours; this prints how fast, at several sizes, so "linear in the output" is a figure (the
same MB/s at 1, 10 and 50 MB). Input: the boot transcripts and kernel logs of
tests/data/boot (and the shared corpus when present), repeated; fed the way a console reader
does, one read (~64 KiB of lines) per call, and line by line.

    .venv/bin/python benchmarks/bench_console_watch.py [--sizes 1 10 50] [--read-kib 64]

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
import re
import time
from collections.abc import Callable
from pathlib import Path

from harness.console.boot import BootPolicy, BootTracker, LineMatcher, clean_lines
from harness.console.watch import DEATH_PATTERNS, ConsoleWatch

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
                blocks.append(block)
                total += size
                block, size = [], 0
                if total >= target:
                    break
    return blocks


def measure(feed: Callable[[list[str]], object], blocks: list[list[str]]) -> float:
    megabytes = sum(len(line) + 1 for block in blocks for line in block) / 1e6
    started = time.perf_counter()
    for block in blocks:
        feed(block)
    return megabytes / (time.perf_counter() - started)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 10, 50], help="MB")
    parser.add_argument("--read-kib", type=int, default=64, help="bytes per console read")
    parser.add_argument("--slow-max", type=float, default=10, help="MB for the slow rows")
    args = parser.parse_args()
    read_bytes = args.read_kib * 1024
    lines = {True: source_lines(booted=False), False: source_lines(booted=True)}
    triggers = LineMatcher([p.regex for p in DEATH_PATTERNS]).triggers
    print(f"{len(DEATH_PATTERNS)} death patterns, {len(triggers)} literal triggers; "
          f"reads of {args.read_kib} KiB")
    print(f"{'MB/s':<24}" + "".join(f"{size:>10g} MB" for size in args.sizes))
    for name, run, raw in ROWS:
        figures = []
        for size in args.sizes:
            if name in SLOW and size > args.slow_max:
                figures.append("-")
                continue
            figures.append(f"{run(blocks_of(lines[raw], size, read_bytes)):.1f}")
        print(f"{name:<24}" + "".join(f"{figure:>13}" for figure in figures))


if __name__ == "__main__":
    main()
