"""Watch a host's serial console while its stages run over SSH.

A panic, machine check or OOM kill shows on the console, often while the SSH command just
hangs. ConsoleWatch is fed console lines by the reader thread, matches them against a
table of "death strings" (data: DEATH_PATTERNS) and, through a BootTracker, notices an
unexpected reboot. A critical finding wakes wait_for_death() and every on_finding()
callback at once (no polling), so the running stage can be cancelled within a second.

It also keeps a bounded ring of recent lines and hands out marks, so each stage can
attach its own slice of the console; older lines are found in the console log file
(written by the reader) through the byte offsets the marks carry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from harness.console.boot import (
    EVIDENCE_LIMIT,
    BootTracker,
    Finding,
    LineBlock,
    LineMatcher,
    clean_block,
    evidence_lines,
    lines_within,
)
from harness.models import Severity

log = logging.getLogger(__name__)


class DeathPattern(NamedTuple):
    """A console line that means the host (or the test on it) is in trouble."""

    name: str  # becomes Finding.kind
    regex: str  # searched per line; must contain a plain substring of 3+ characters to be fast
    severity: Severity  # critical ones fail the running stage


#: The death strings, most specific first: a line is reported under the first that matches
#: ("watchdog: BUG: soft lockup" is a soft lockup, not a plain BUG). As the kernel prints
#: them; boot-time lines like "NMI watchdog: Enabled" or "EDAC MC: Ver: 3.0.0" must not match.
DEATH_PATTERNS: tuple[DeathPattern, ...] = (
    DeathPattern("panic", r"Kernel panic - not syncing", Severity.CRITICAL),
    DeathPattern("hard-lockup", r"[Hh]ard LOCKUP", Severity.CRITICAL),
    DeathPattern("soft-lockup", r"BUG: soft lockup", Severity.CRITICAL),
    DeathPattern("rcu-stall", r"rcu_\w+ (?:self-)?detected stall", Severity.CRITICAL),
    DeathPattern("machine-check", r"Machine [Cc]heck|Memory failure: 0x", Severity.CRITICAL),
    DeathPattern("edac-ue", r"EDAC .*\bUE\b", Severity.CRITICAL),  # uncorrectable memory error
    DeathPattern("edac-ce", r"EDAC .*\bCE\b", Severity.WARNING),  # corrected: reported only
    DeathPattern("hardware-error", r"[Hh]ardware (?:[Ee]rror|memory (?:error|corruption))",
                 Severity.CRITICAL),
    DeathPattern("bug", r"\bBUG: ", Severity.CRITICAL),
    DeathPattern("oops", r"\bOops: ", Severity.CRITICAL),
    DeathPattern("user-gpf", r"traps: \S+ general protection fault ip:", Severity.WARNING),
    DeathPattern("general-protection-fault", r"general protection fault", Severity.CRITICAL),
    DeathPattern("oom", r"[Oo]ut of memory: Kill|invoked oom-killer", Severity.CRITICAL),
    DeathPattern("nmi", r"NMI(?: received for unknown reason| watchdog: (?:BUG|Watchdog detected)"
                        r"|: (?:PCI system error|IOCK error))", Severity.CRITICAL),
    DeathPattern("pcie-fatal", r"PCIe Bus Error: severity=(?:Uncorrected|Uncorrectable)",
                 Severity.CRITICAL),
    DeathPattern("pcie-corrected", r"PCIe Bus Error: severity=(?:Corrected)", Severity.WARNING),
    DeathPattern("gpu-lost", r"GPU has fallen off the bus", Severity.CRITICAL),
    DeathPattern("gpu-xid", r"NVRM: Xid \(", Severity.WARNING),
    DeathPattern("hung-task", r"blocked for more than \d+ seconds", Severity.WARNING),
)

#: Tracker findings the death table already reports under its own name.
_TRACKER_DUPLICATES = frozenset({"panic"})


@dataclass(frozen=True)
class Mark:
    """A point in the console stream: lines before it, the time, the log file offset."""

    seq: int  # how many lines had been fed
    at: float
    log_offset: int | None  # byte offset in the console log file, if the reader gave one


@dataclass(frozen=True)
class ConsoleSlice:
    """The console lines between two marks that are still in memory."""

    lines: tuple[str, ...]
    dropped: int  # lines of the range no longer in memory: read the log between the offsets
    start: Mark
    end: Mark


class _Block(NamedTuple):
    seq: int  # sequence number of its first line
    at: float
    lines: tuple[str, ...]
    size: int  # characters


FindingCallback = Callable[[Finding], None]


class ConsoleWatch:
    """Death-string and reboot detection on a console stream; thread-safe.

    One thread (the console reader) calls feed()/feed_lines(); any thread may wait,
    subscribe, mark or slice.
    """

    def __init__(
        self,
        patterns: Sequence[DeathPattern] = DEATH_PATTERNS,
        tracker: BootTracker | None = None,
        *,
        host: str | None = None,
        clock: Callable[[], float] = time.time,
        ring_lines: int = 50_000,
        ring_chars: int = 8 * 2**20,
        evidence_lines: int = 50,
        max_findings: int = 200,
    ) -> None:
        self.patterns = tuple(patterns)
        self.tracker = tracker
        self.host = host if host is not None else (tracker.host if tracker else "console")
        self._clock = clock
        self._matcher = LineMatcher([p.regex for p in self.patterns])
        self._ring_lines = ring_lines
        self._ring_chars = ring_chars
        self._evidence_lines = evidence_lines
        self._max_findings = max_findings
        self._cond = threading.Condition()
        self._ring: deque[_Block] = deque()
        self._lines = 0  # lines in the ring
        self._chars = 0  # characters in the ring
        self._seq = 0  # lines fed in all
        self._log_offset: int | None = None
        self._findings: list[Finding] = []
        self._counts: Counter[str] = Counter()
        self._death: Finding | None = None
        self._callbacks: list[FindingCallback] = []

    # ---- feeding (the reader thread)

    def feed(self, line: str, at: float | None = None,
             log_offset: int | None = None) -> list[Finding]:
        """Take one console line (no newline). `log_offset`: log file position after it."""
        return self.feed_lines((line,), at, log_offset)

    def feed_lines(self, lines: Sequence[str], at: float | None = None,
                   log_offset: int | None = None) -> list[Finding]:
        """Take lines that arrived together (one read); return the findings they caused."""
        at = self._clock() if at is None else at
        with self._cond:
            first = self._seq
            if isinstance(lines, LineBlock):  # from SerialChannel's reader: joined already
                joined = lines.text
                longest = (EVIDENCE_LIMIT if lines_within(joined, EVIDENCE_LIMIT)
                           else max(map(len, lines), default=0))  # a bound is enough
            else:
                joined = "\n".join(lines)
                longest = max(map(len, lines), default=0)
            chars = len(joined) - len(lines) + 1 if lines else 0  # the newlines are not kept
            self._remember(lines, at, log_offset, longest, chars)
            new: list[Finding] = []
            text: list[str]
            cleaned_joined: str | None
            if isinstance(lines, LineBlock) and lines.plain:
                text, cleaned_joined = lines, joined  # nothing to clean
            else:
                text, cleaned_joined = clean_block(lines, joined, longest)
            for index, matched in self._matcher.scan(text, cleaned_joined):
                pattern = self.patterns[matched[0]]
                new.append(Finding(
                    kind=pattern.name, severity=pattern.severity,
                    step=self.tracker.step if self.tracker else None,
                    message=f"{self.host}: {pattern.name} on the console: "
                            f"{text[index].strip()[:300]!r}",
                    evidence=self._evidence(first + index), at=at))
            if self.tracker is not None:
                new += [f for f in self.tracker.feed_lines(
                    lines, at, cleaned=text, cleaned_joined=cleaned_joined)
                        if f.kind not in _TRACKER_DUPLICATES]
            callbacks = self._record(new)
        self._notify(new, callbacks)
        return new

    def check_deadlines(self, now: float | None = None) -> list[Finding]:
        """Ask the tracker about its deadlines (from any thread, while no line arrives)."""
        if self.tracker is None:
            return []
        with self._cond:
            new = self.tracker.check_deadlines(now)
            callbacks = self._record(new)
        self._notify(new, callbacks)
        return new

    # ---- reading (any thread)

    @property
    def findings(self) -> list[Finding]:
        """Findings so far (the first max_findings; `counts` has them all)."""
        with self._cond:
            return list(self._findings)

    @property
    def counts(self) -> Counter[str]:
        """How many findings of each kind, including those past max_findings."""
        with self._cond:
            return Counter(self._counts)

    @property
    def death(self) -> Finding | None:
        """The first critical finding, if any: the host is not fit to go on."""
        with self._cond:
            return self._death

    def wait_for_death(self, timeout: float | None) -> Finding | None:
        """Block until a critical finding (returned) or `timeout` seconds (None returned)."""
        with self._cond:
            self._cond.wait_for(lambda: self._death is not None, timeout)
            return self._death

    def on_finding(self, callback: FindingCallback) -> Callable[[], None]:
        """Call `callback(finding)` for each new finding, on the reader thread, outside the
        lock; returns a function that unsubscribes. A callback that raises is logged."""
        with self._cond:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._cond:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return unsubscribe

    def mark(self) -> Mark:
        """The current point of the stream, e.g. when a stage starts and ends."""
        with self._cond:
            return Mark(self._seq, self._clock(), self._log_offset)

    def slice(self, start: Mark, end: Mark | None = None) -> ConsoleSlice:
        """The lines fed between `start` and `end` (default: now) still held in memory."""
        with self._cond:
            if end is None:
                end = Mark(self._seq, self._clock(), self._log_offset)
            oldest = self._ring[0].seq if self._ring else self._seq
            lines: list[str] = []
            for block in self._ring:
                if block.seq >= end.seq:
                    break
                if block.seq + len(block.lines) <= start.seq:
                    continue
                low = max(start.seq - block.seq, 0)
                high = min(end.seq - block.seq, len(block.lines))
                lines.extend(block.lines[low:high])
            dropped = max(0, min(end.seq, oldest) - start.seq)
            return ConsoleSlice(tuple(lines), dropped, start, end)

    def memory(self) -> tuple[int, int]:
        """(lines, characters) held in the ring: bounded by ring_lines and ring_chars."""
        with self._cond:
            return self._lines, self._chars

    # ---- internals (called with the lock held)

    def _remember(self, lines: Sequence[str], at: float, log_offset: int | None,
                  longest: int, chars: int) -> None:
        """Keep the block in the ring. `longest`: its longest line; `chars`: its size (both
        known to feed_lines already, so no pass over the lines is made twice)."""
        if longest <= EVIDENCE_LIMIT:
            kept, size = tuple(lines), chars
        else:
            kept = tuple(evidence_lines(lines))
            size = sum(map(len, kept))
        self._ring.append(_Block(self._seq, at, kept, size))
        self._seq += len(kept)
        self._lines += len(kept)
        self._chars += size
        if log_offset is not None:
            self._log_offset = log_offset
        while len(self._ring) > 1 and (
            self._lines > self._ring_lines or self._chars > self._ring_chars
        ):
            old = self._ring.popleft()
            self._lines -= len(old.lines)
            self._chars -= old.size

    def _evidence(self, last_seq: int) -> tuple[str, ...]:
        """The `evidence_lines` lines up to and including line `last_seq`."""
        need = self._evidence_lines
        chunks: list[tuple[str, ...]] = []
        for block in reversed(self._ring):
            if block.seq > last_seq:
                continue
            upto = min(len(block.lines), last_seq - block.seq + 1)
            chunk = block.lines[max(0, upto - need):upto]
            chunks.append(chunk)
            need -= len(chunk)
            if need <= 0:
                break
        return tuple(line for chunk in reversed(chunks) for line in chunk)

    def _record(self, new: list[Finding]) -> list[FindingCallback]:
        woke = False
        for finding in new:
            self._counts[finding.kind] += 1
            if len(self._findings) < self._max_findings:
                self._findings.append(finding)
            if self._death is None and finding.severity is Severity.CRITICAL:
                self._death = finding
                woke = True
        if woke:
            self._cond.notify_all()
        return list(self._callbacks) if new else []

    def _notify(self, new: list[Finding], callbacks: list[FindingCallback]) -> None:
        for finding in new:
            for callback in callbacks:
                try:
                    callback(finding)
                except Exception:
                    log.exception("console watch callback failed on %s", finding.kind)
