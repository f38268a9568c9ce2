"""Where a host is in its boot, read from its serial console, and what went wrong there.

The console is the only witness of a boot: firmware, PXE, iPXE, the kernel, the initramfs
and userspace all print on it before SSH exists. BootTracker is fed console lines (from a
live serial channel or a replay; it does no I/O) and keeps the current step, a timeline for
the report, and findings (kernel panic, boot loop, unexpected reboot, a step past its
deadline, PXE/iPXE errors), each with the console tail as evidence.

What the console looks like is data, not code: DEFAULT_STEP_PATTERNS (step -> regexes) and
DEFAULT_NETBOOT_ERRORS, so an operator adds a vendor's firmware banner to a table. What is
allowed (deadlines, expected reboots, the boot-loop threshold) is a BootPolicy.

Matching is linear in the output: lines are matched in blocks, first by plain substrings
every pattern must contain (all of them found in one Aho-Corasick pass over the block, at
GB/s), then by the full regexes on the few lines that hold one (LineMatcher). CPython's re
tries every branch of an alternation at almost every character, so one regex of all the
death strings is ~20x slower than this (benchmarks/bench_console_watch.py prints both).
"""

from __future__ import annotations

import bisect
import enum
import ipaddress
import itertools
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

import ahocorasick_rs

from harness.models import Severity

#: Lines longer than this are matched (and kept as evidence) only up to here.
MATCH_LIMIT = 64 * 1024
#: Raw lines kept as evidence (and in the watch's ring) are cut here: the log file has them whole.
EVIDENCE_LIMIT = 4096
#: Timeline entries and findings a tracker keeps (a boot loop must not grow memory forever).
MAX_KEPT = 1000


class Step(enum.IntEnum):
    """Boot steps in the order a network boot goes through them."""

    POWER_ON = 0  # the harness powered the host on; nothing recognised yet
    FIRMWARE = 1
    PXE = 2
    IPXE = 3
    KERNEL = 4
    INITRAMFS = 5
    USERSPACE = 6
    READY = 7  # the live image announced itself (VET-READY)

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Step.POWER_ON: "power-on",
    Step.FIRMWARE: "firmware",
    Step.PXE: "PXE",
    Step.IPXE: "iPXE",
    Step.KERNEL: "kernel",
    Step.INITRAMFS: "initramfs",
    Step.USERSPACE: "userspace",
    Step.READY: "VET-READY",
}

#: Steps a new boot starts from: seeing one again means the host restarted.
EARLY_STEPS = frozenset({Step.FIRMWARE, Step.PXE, Step.IPXE, Step.KERNEL})

#: What a step waits for, for the deadline message ("no network boot 60 s after firmware").
AWAITING = MappingProxyType({
    Step.POWER_ON: "no console output recognised",
    Step.FIRMWARE: "no network boot (PXE/iPXE)",
    Step.PXE: "no iPXE or kernel",
    Step.IPXE: "no kernel started",
    Step.KERNEL: "no initramfs",
    Step.INITRAMFS: "no userspace (systemd)",
    Step.USERSPACE: "no VET-READY announce",
})

# --------------------------------------------------------------------------- announce

#: The line the live image prints on the console once sshd listens
#: (live_image/rootfs/usr/local/sbin/vet-announce). Fields are key=value, in any order;
#: ip, run and hostkey are required; mac, token (12 hex digits of the SHA-256 of the token
#: the host booted with, or "none") and token-ok (yes/no) optional; others ignored.
ANNOUNCE_FORMAT = "VET-READY ip={ip} mac={mac} run={run_id} token={token} hostkey={hostkey}"
ANNOUNCE_PATTERN = r"VET-READY((?: +[a-z][a-z0-9-]*=\S+)+) *$"
_ANNOUNCE = re.compile(ANNOUNCE_PATTERN, re.MULTILINE)
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
_RUN_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TOKEN_FP = re.compile(r"[0-9a-f]{12}|none")


@dataclass(frozen=True)
class Announce:
    """A parsed VET-READY line: where to connect and which host key to pin."""

    ip: str
    run_id: str
    hostkey_fingerprint: str  # "SHA256:..." as ssh-keygen -l prints it
    raw: str
    mac: str | None = None
    token_ok: bool | None = None
    #: harness.token.token_fingerprint of the token on the host's command line; "none"
    #: when it booted without one, None when the line does not say.
    token_fingerprint: str | None = None


def format_announce(ip: str, mac: str, run_id: str, hostkey: str, token: str = "none") -> str:
    """The announce line as the live image prints it (for tests and fakes)."""
    return ANNOUNCE_FORMAT.format(ip=ip, mac=mac, run_id=run_id, hostkey=hostkey, token=token)


def parse_announce(line: str) -> Announce | None:
    """The VET-READY announce in `line`, or None if there is none or it is malformed."""
    match = _ANNOUNCE.search(clean_line(line))
    if match is None:
        return None
    fields: dict[str, str] = {}
    for item in match.group(1).split():
        key, _, value = item.partition("=")
        fields.setdefault(key, value)
    ip, run_id, hostkey = fields.get("ip", ""), fields.get("run", ""), fields.get("hostkey", "")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return None
    if not _RUN_ID.fullmatch(run_id) or not _FINGERPRINT.fullmatch(hostkey):
        return None
    mac = fields.get("mac")
    if mac is not None and not _MAC.fullmatch(mac):
        return None
    token = fields.get("token-ok")
    if token not in (None, "yes", "no"):
        return None
    token_fp = fields.get("token")
    if token_fp is not None and not _TOKEN_FP.fullmatch(token_fp):
        return None
    return Announce(ip=ip, run_id=run_id, hostkey_fingerprint=hostkey, raw=line,
                    mac=mac.lower() if mac else None,
                    token_ok=None if token is None else token == "yes",
                    token_fingerprint=token_fp)


# --------------------------------------------------------------------------- patterns


@dataclass(frozen=True)
class StepPatterns:
    """How the console shows one step.

    `starts` are printed once per pass through the step (a firmware banner, "Linux version"):
    seeing one again, or seeing it after a later step, means the host restarted. `shows`
    only prove the host is in the step; they move the tracker forward, never back.
    """

    starts: tuple[str, ...] = ()
    shows: tuple[str, ...] = ()


#: Per step, the console lines that show it. Add your vendor's banners here (or pass a
#: copy in BootPolicy.step_patterns). Patterns are searched in a line with re.MULTILINE
#: (a carriage return starts a new segment, so ^ anchors each one); each must contain a
#: plain substring of 3+ characters or it is searched in every line (correct, slower).
DEFAULT_STEP_PATTERNS: Mapping[Step, StepPatterns] = MappingProxyType({
    Step.FIRMWARE: StepPatterns(
        starts=(
            r"SeaBIOS \(version ",
            # AMI Aptio (Supermicro, ASRock Rack, ...); the kernel's "efi: ... by American
            # Megatrends" must not match.
            r"Copyright \(C\) \d{4}(?:-\d{4})? American Megatrends",
            r"Press <?(?:DEL|Del|F2)>? (?:or <?\w+>? )?to (?:enter|run) [Ss]etup",
            r"F2 = System Setup",  # Dell PowerEdge
        ),
        shows=(
            r"^Booting from ",
            r"^Machine UUID ",
            r"^iPXE \(https?://ipxe\.org\) [0-9A-Fa-f]{2}:",  # iPXE option ROM found at POST
            r"BdsDxe: (?:loading|starting) Boot",  # TianoCore/OVMF boot manager
        ),
    ),
    Step.PXE: StepPatterns(
        shows=(
            r"PXE->EB",
            r"^CLIENT MAC ADDR: ",
            r"Intel\(R\) Boot Agent",
            r"Broadcom UNDI PXE",
            r"^PXE \d\.\d+ Build",
            r">>Start PXE over IPv[46]",
            r"Station IP address is ",
        ),
    ),
    Step.IPXE: StepPatterns(
        starts=(r"iPXE initialising devices",),
        shows=(
            r"^iPXE \d\S* -- Open Source Network Boot Firmware",
            r"^Configuring \(net\d",
            r"^(?:https?|tftp)://\S+\.\.\.",
            r"^net\d+: [0-9a-f:]{17} using ",
        ),
    ),
    Step.KERNEL: StepPatterns(
        starts=(r"Linux version \d",),
        shows=(r"Decompressing Linux", r"Booting the kernel", r"Command line: ", r"EFI stub: ",
               # vet's iPXE scripts say so as they hand over: the kernel itself is quiet
               # at loglevel=4 (which keeps the command line, and its token, off the console).
               r"^vet-ipxe: starting the kernel"),
    ),
    Step.INITRAMFS: StepPatterns(
        shows=(
            r"Run /init as init process",
            r"Loading, please wait",
            r"^Begin: ",
            r"\bswitch_root\b",
            r"vet-initrd: ",
            r"Running in initrd",
            r"dracut-\w+\[\d+\]",
        ),
    ),
    Step.USERSPACE: StepPatterns(
        shows=(
            r"systemd\[1\]: ",
            r"Welcome to .+!",
            r"Reached target ",
            r"\[  OK  \] ",
            r"^\S+ login: ?$",
        ),
    ),
    Step.READY: StepPatterns(starts=(ANNOUNCE_PATTERN,)),
})


class ErrorPattern(NamedTuple):
    """A console line that means a step failed: kind, regex, severity."""

    kind: str
    regex: str
    severity: Severity


#: Network-boot failures, matched only before the kernel starts (later, "Connection timed
#: out" is ordinary userspace noise). Critical ones end the boot; warnings may be retried.
DEFAULT_NETBOOT_ERRORS: tuple[ErrorPattern, ...] = (
    ErrorPattern("ipxe-error", r"No more network devices", Severity.CRITICAL),
    ErrorPattern("ipxe-error", r"Nothing to boot", Severity.CRITICAL),
    ErrorPattern("ipxe-error", r"Could not boot", Severity.CRITICAL),
    ErrorPattern("pxe-error", r"No bootable device", Severity.CRITICAL),
    ErrorPattern("ipxe-error", r"No configuration methods succeeded", Severity.WARNING),
    ErrorPattern("ipxe-error", r"Connection timed out", Severity.WARNING),
    ErrorPattern("ipxe-error", r"\(https?://ipxe\.org/[0-9a-f]{8}\)", Severity.WARNING),
    ErrorPattern("pxe-error", r"PXE-E[0-9A-F]{2}", Severity.WARNING),
)

#: Failures after the kernel started that the tracker reports itself.
DEFAULT_OS_ERRORS: tuple[ErrorPattern, ...] = (
    ErrorPattern("initrd-error", r"vet-initrd: FATAL", Severity.CRITICAL),
)

#: The kernel's panic line (the "---[ end Kernel panic - not syncing" trailer contains it).
PANIC_PATTERN = r"Kernel panic - not syncing"

#: Seconds a step may last before the tracker reports it (bare metal: POST on a large
#: server takes minutes). The virtual lab passes tighter ones, e.g. FIRMWARE: 60.
DEFAULT_DEADLINES: Mapping[Step, float] = MappingProxyType({
    Step.POWER_ON: 600.0,
    Step.FIRMWARE: 900.0,
    Step.PXE: 120.0,
    Step.IPXE: 300.0,
    Step.KERNEL: 300.0,
    Step.INITRAMFS: 600.0,
    Step.USERSPACE: 300.0,
})


@dataclass(frozen=True)
class BootPolicy:
    """What a boot may do: deadlines, which reboots are expected, what counts as a loop."""

    deadlines: Mapping[Step, float] = field(default_factory=lambda: DEFAULT_DEADLINES)
    #: A restart while the host is at one of these steps is part of booting (a firmware
    #: update, a kernel that panicked early); repeats are caught as a boot loop instead.
    reboot_ok_from: frozenset[Step] = frozenset(EARLY_STEPS | {Step.POWER_ON, Step.INITRAMFS})
    #: Restarts from other steps (userspace, ready) that are expected, e.g. after a BIOS
    #: update stage; each one seen uses one up. BootTracker.expect_reboots adds more.
    allowed_reboots: int = 0
    #: An early step entered this many times without reaching VET-READY is a boot loop.
    bootloop_after: int = 3
    #: Console lines attached to each finding.
    evidence_lines: int = 50
    step_patterns: Mapping[Step, StepPatterns] = field(
        default_factory=lambda: DEFAULT_STEP_PATTERNS)
    netboot_errors: tuple[ErrorPattern, ...] = DEFAULT_NETBOOT_ERRORS
    os_errors: tuple[ErrorPattern, ...] = DEFAULT_OS_ERRORS


@dataclass(frozen=True)
class Finding:
    """Something the console showed that a person must know about, with its evidence."""

    kind: str  # "panic", "bootloop", "unexpected-reboot", "deadline", "pxe-error", ...
    severity: Severity
    step: Step | None  # where the host was
    message: str  # one sentence for the operator, naming the host and the last line seen
    evidence: tuple[str, ...] = field(repr=False)  # the console tail, raw (escapes kept)
    at: float


class TimelineEntry(NamedTuple):
    """When the host entered a step, and the line that showed it."""

    step: Step
    at: float
    line: str


# --------------------------------------------------------------------------- cleaning

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: terminal titles
    r"|\x1b[ -/]*[0-~]"  # other escapes: ESC c (reset), ESC 7, ESC ( B
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
# Control characters other than tab, newline and carriage return: dropped for matching.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]+")


def clean_line(line: str) -> str:
    """The text of a console line as a person sees it: for matching, never for evidence.

    Escape sequences and control characters go; a carriage return inside the line (a
    progress counter redrawn in place) becomes a newline, so each redraw is a segment
    that ^ can anchor. Only the first MATCH_LIMIT characters are kept.
    """
    if len(line) > MATCH_LIMIT:
        line = line[:MATCH_LIMIT]
    if line.isprintable():
        return line
    if "\x1b" in line or "\x9b" in line:
        line = _ANSI.sub("", line)
    line = line.rstrip("\r\n").replace("\r", "\n")
    return _CONTROLS.sub("", line) if not line.isprintable() else line


class LineBlock(list[str]):
    """The lines of one console read, as SerialChannel's reader hands them to subscribers,
    with what the reader learnt about them on its way (its passes over the read are made
    anyway), so that a subscriber need not make them again: `text` is "\\n".join(self)
    (no line holds a newline) and `plain` says every line is printable ASCII and tabs
    (clean_line leaves each as it is). Read-only: `text` would no longer match."""

    __slots__ = ("plain", "text")

    def __init__(self, lines: Iterable[str], text: str, plain: bool) -> None:
        super().__init__(lines)
        self.text = text
        self.plain = plain


def lines_within(text: str, limit: int) -> bool:
    """Whether no line of `text` (lines joined by newlines, none holding one of its own)
    is longer than `limit`: one rfind per `limit` characters instead of a len() per line."""
    position, size = 0, len(text)
    while size - position > limit:
        newline = text.rfind("\n", position, position + limit + 1)
        if newline < 0:
            return False
        position = newline + 1
    return True


def clean_lines(lines: Sequence[str]) -> list[str]:
    """clean_line for a block; the usual block (CRLF ends, all printable) costs a few C passes."""
    return clean_block(lines)[0]


def clean_block(lines: Sequence[str], joined: str | None = None,
                longest: int | None = None) -> tuple[list[str], str | None]:
    """clean_lines(lines), and those lines joined by newlines when that came for free
    (None otherwise): LineMatcher.scan takes it and saves joining them again.

    `joined` ("\\n".join(lines)) and `longest` (the longest line's length, or a bound on
    it): when the caller has them already (ConsoleWatch needs both for its ring).
    """
    text = "\n".join(lines) if joined is None else joined
    newline_free = False  # known: no line holds a newline of its own
    if "\r" in text:  # serial consoles end lines with CRLF: drop those CRs for the whole block
        text = text.replace("\r\n", "\n")
        parts = text.split("\n")
        if parts[-1].endswith("\r"):
            parts[-1] = parts[-1][:-1]
            text = text[:-1]
        if len(parts) == len(lines):
            lines, newline_free = parts, True
        else:
            lines = [line.rstrip("\r") for line in lines]
            text = "\n".join(lines)
        longest = None  # the lines changed
    if longest is None:
        longest = max(map(len, lines), default=0)
    if longest <= MATCH_LIMIT:
        if text.isascii():  # O(1); the usual console. bytes.translate runs at GB/s.
            odd = text.encode("ascii").translate(None, _KEPT_ASCII)
            if not odd:
                return list(lines), text
            if newline_free or _no_line_has_a_newline(lines, text):
                return _clean_holding(lines, text, set(odd.decode("ascii"))), None
        elif text.replace("\n", " ").replace("\t", " ").isprintable():
            return list(lines), text
    return [line if len(line) <= MATCH_LIMIT and line.isprintable() else clean_line(line)
            for line in lines], None


#: Printable ASCII, newline and tab: characters clean_line leaves as they are.
_KEPT_ASCII = bytes(range(0x20, 0x7F)) + b"\n\t"


def _no_line_has_a_newline(lines: Sequence[str], text: str) -> bool:
    """Whether the newlines of `text` ("\\n".join(lines)) are only the joins. A line ending
    in one would show as two in a row or a newline at the end: then count them."""
    if "\n\n" not in text and not text.endswith("\n"):
        return True
    return text.count("\n") == len(lines) - 1


def _clean_holding(lines: Sequence[str], text: str, chars: set[str]) -> list[str]:
    """`lines` with clean_line applied to those holding one of `chars` (`text`: the lines
    joined by newlines, none inside a line): one find per hit, no Python step per line."""
    cleaned = list(lines)
    starts = _line_starts(lines)
    for char in chars:
        position = text.find(char)
        while position >= 0:
            index = bisect.bisect_right(starts, position) - 1
            cleaned[index] = clean_line(lines[index])
            position = text.find(char, starts[index + 1])
    return cleaned


def evidence_line(line: str) -> str:
    """A raw line as kept for evidence: bounded, so a 1 MB line cannot flood memory."""
    if len(line) <= EVIDENCE_LIMIT:
        return line
    return f"{line[:EVIDENCE_LIMIT]}... [{len(line) - EVIDENCE_LIMIT} more characters]"


def evidence_lines(lines: Sequence[str]) -> Sequence[str]:
    """evidence_line for a block; the block itself when no line is too long (the usual)."""
    if max(map(len, lines), default=0) <= EVIDENCE_LIMIT:
        return lines
    return [evidence_line(line) for line in lines]


# --------------------------------------------------------------------------- matching

_BREAKING_ESCAPES = frozenset("dDwWsSbBAZ")
_REPEAT = re.compile(r"\{\d*,?\d*\}")


def required_literals(regex: str, min_length: int = 3) -> tuple[str, ...] | None:
    """Plain substrings, one per top-level alternative, one of which every match contains.

    Conservative: anything it does not understand (case-insensitive or verbose flags,
    numeric escapes, an alternative without a literal of `min_length`) gives None, and the
    caller then searches the regex everywhere.
    """
    if re.search(r"\(\?[a-zA-Z-]*[ix]", regex):
        return None
    found: list[str] = []
    for alternative in _split_alternatives(regex):
        runs = _literal_runs(alternative)
        best = max(runs, key=len, default="") if runs is not None else ""
        if len(best) < min_length:
            return None
        found.append(best)
    return tuple(found)


def _split_alternatives(regex: str) -> list[str]:
    parts: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(regex):
        char = regex[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            i = _skip_class(regex, i)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(regex[start:i])
            start = i + 1
        i += 1
    parts.append(regex[start:])
    return parts


def _skip_class(regex: str, i: int) -> int:
    """Index just past the character class opening at regex[i]."""
    i += 1
    if regex[i:i + 1] == "^":
        i += 1
    if regex[i:i + 1] == "]":
        i += 1
    while i < len(regex) and regex[i] != "]":
        i += 2 if regex[i] == "\\" else 1
    return i + 1


def _skip_group(regex: str, i: int) -> int:
    """Index just past the group opening at regex[i]."""
    depth = 0
    while i < len(regex):
        char = regex[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            i = _skip_class(regex, i)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _literal_runs(alternative: str) -> list[str] | None:
    """The runs of plain characters every match of `alternative` must contain."""
    runs: list[str] = []
    run: list[str] = []

    def close() -> None:
        if run:
            runs.append("".join(run))
            run.clear()

    i = 0
    while i < len(alternative):
        char = alternative[i]
        if char == "\\":
            escaped = alternative[i + 1:i + 2]
            if escaped.isalnum() and escaped not in _BREAKING_ESCAPES:
                return None  # \x41, \n, \1: not worth decoding
            if escaped.isalnum() or not escaped:
                close()
            else:
                run.append(escaped)
            i += 2
        elif char == "[":
            close()
            i = _skip_class(alternative, i)
        elif char == "(":
            close()
            i = _skip_group(alternative, i)
        elif char in ".^$":
            close()
            i += 1
        elif char in "?*+" or (char == "{" and _REPEAT.match(alternative, i)):
            if run:
                run.pop()  # the quantified character may be absent
            close()
            repeat = _REPEAT.match(alternative, i) if char == "{" else None
            i = repeat.end() if repeat else i + 1
        else:
            run.append(char)
            i += 1
    close()
    return runs


class _LiteralFinder:
    """Where a set of literals occurs in a block: one C-level pass, not one per literal.

    Aho-Corasick (the Rust aho-corasick crate through ahocorasick_rs) with leftmost-first
    matching, which lets the crate use its SIMD prefilter (Teddy): ~2.4 GB/s on console
    text here, where each of 17 str.find passes runs at ~1.5 GB/s and one `re` alternation
    of the literals at ~50 MB/s. Leftmost matches never overlap: an occurrence that starts
    inside a reported one is not reported (LineMatcher accounts for that). ASCII blocks
    (the usual console) are searched as bytes: the offsets are the same, and the str search
    costs ~6x more, converting byte offsets to character offsets.
    """

    def __init__(self, literals: Sequence[str]) -> None:
        kind = ahocorasick_rs.MatchKind.LeftmostFirst
        self._text = ahocorasick_rs.AhoCorasick(literals, matchkind=kind)
        # An ASCII block can hold only the ASCII literals; _ascii_ids maps theirs back.
        self._ascii_ids = [n for n, literal in enumerate(literals) if literal.isascii()]
        self._ascii = ahocorasick_rs.BytesAhoCorasick(
            [literals[n].encode("ascii") for n in self._ascii_ids], matchkind=kind)

    def find(self, block: str) -> list[tuple[int, int]]:
        """(literal index, offset) of the literals in `block`, by ascending offset."""
        if block.isascii():  # O(1) in CPython: a flag of the string
            ids = self._ascii_ids
            found = self._ascii.find_matches_as_indexes(block.encode("ascii"))
            return [(ids[literal], start) for literal, start, _ in found]
        return [(literal, start) for literal, start, _ in
                self._text.find_matches_as_indexes(block)]


def _overlapping(literal: str, others: Sequence[str]) -> list[int]:
    """Indexes of the `others` that can start inside an occurrence of `literal` (lie in it,
    or begin with a proper suffix of it) and so be hidden by it from a leftmost search."""
    return [n for n, other in enumerate(others) if other != literal and (
        other in literal or any(other.startswith(literal[cut:]) for cut in range(1, len(literal))))]


class LineMatcher:
    """Which lines of a block match which of a list of regexes, in time linear in the block.

    Each regex's required literal (required_literals) is looked for in the whole block in
    one pass (_LiteralFinder); only lines holding one are searched, with the regexes that
    need a literal the line holds. Regexes without a literal are searched over the block.
    Regexes are per line: compiled with MULTILINE, they must not need to see two lines at
    once.
    """

    def __init__(self, regexes: Sequence[str]) -> None:
        self.regexes = tuple(re.compile(regex, re.MULTILINE) for regex in regexes)
        needs: dict[str, set[int]] = {}  # literal -> regexes that need it
        self._unfiltered: tuple[int, ...] = ()
        for index, regex in enumerate(regexes):
            found = required_literals(regex)
            if found is None or any("\n" in literal for literal in found):
                # A literal with a newline could run across two lines of the block.
                self._unfiltered += (index,)
                continue
            for literal in found:
                needs.setdefault(literal, set()).add(index)
        # A literal that contains another is redundant: the shorter one finds its lines too.
        by_trigger: dict[str, tuple[int, ...]] = {}
        for literal in sorted(needs, key=len):
            trigger = next((t for t in by_trigger if t in literal), literal)
            by_trigger[trigger] = tuple(sorted({*by_trigger.get(trigger, ()), *needs[literal]}))
        self.triggers = tuple(by_trigger)
        self._wants = tuple(by_trigger.values())  # per trigger: the regexes it lets through
        # Per trigger: the triggers a hit on it may hide, checked on the hit's line.
        self._hides = tuple(
            tuple((self.triggers[n], self._wants[n])
                  for n in _overlapping(trigger, self.triggers))
            for trigger in self.triggers)
        self._finder = _LiteralFinder(self.triggers)
        self._searches = tuple(regex.search for regex in self.regexes)

    def scan(self, lines: Sequence[str],
             joined: str | None = None) -> list[tuple[int, list[int]]]:
        """(line index, indexes of the regexes it matches) for each matching line, in order.

        `joined`: "\\n".join(lines), when the caller has it (clean_block gives it).
        """
        if not lines:
            return []
        if len(lines) == 1 and not self._unfiltered and not any(
                map(lines[0].__contains__, self.triggers)):
            return []  # one line, as a console reader hands most of them over: reject fast
        if joined is None:
            joined = lines[0] if len(lines) == 1 else "\n".join(lines)
        block = joined
        candidates: dict[int, set[int]] = {}  # line index -> regexes to search it with
        hits = self._finder.find(block)
        if hits:
            wants, hides = self._wants, self._hides
            for (trigger, _), index in zip(hits, _lines_of(block, lines, [p for _, p in hits]),
                                           strict=True):
                wanted = candidates.get(index)
                if wanted is None:
                    wanted = candidates[index] = set(wants[trigger])
                else:
                    wanted.update(wants[trigger])
                for hidden, regexes in hides[trigger]:
                    if hidden in lines[index]:
                        wanted.update(regexes)
        starts: list[int] = []
        for regex_index in self._unfiltered:
            for match in self.regexes[regex_index].finditer(block):
                if not starts:
                    starts = _line_starts(lines)
                first = bisect.bisect_right(starts, match.start()) - 1
                last = bisect.bisect_right(starts, max(match.end() - 1, match.start())) - 1
                for index in range(first, last + 1):
                    candidates.setdefault(index, set()).add(regex_index)
        searches = self._searches
        found: list[tuple[int, list[int]]] = []
        # Hits come by ascending offset, so their lines are in order unless others joined.
        for index in sorted(candidates) if starts else candidates:
            text = lines[index]
            matched = [n for n in sorted(candidates[index]) if searches[n](text)]
            if matched:
                found.append((index, matched))
        return found


def _lines_of(block: str, lines: Sequence[str], positions: Sequence[int]) -> list[int]:
    """Index of the line each of `positions` (ascending offsets in block, which is
    "\\n".join(lines)) lies in: the newlines before it, counted in C between positions."""
    indexes = []
    index = previous = 0
    for position in positions:
        index += block.count("\n", previous, position)
        previous = position
        indexes.append(index)
    if index + block.count("\n", previous) == len(lines) - 1:
        return indexes
    # A line holds a newline of its own (a cleaned CR segment): counting overshoots.
    starts = _line_starts(lines)
    return [bisect.bisect_right(starts, position) - 1 for position in positions]


def _line_starts(lines: Sequence[str]) -> list[int]:
    """Offsets where each line starts in "\\n".join(lines), plus one past the end."""
    return list(itertools.accumulate(map((1).__add__, map(len, lines)), initial=0))


# --------------------------------------------------------------------------- tracker


_SCAN_SLICE = 256  # lines the tracker matches at a time


class _Rule(NamedTuple):
    kind: str  # "panic", "error", "start", "show"
    step: Step | None
    error: ErrorPattern | None
    regex: str


class BootTracker:
    """Follows one host's boot from its console lines; not thread-safe (one feeder).

    feed()/feed_lines() take console lines as they arrive and return new findings;
    check_deadlines() lets a caller ask at a deadline when no line arrives.
    """

    def __init__(self, host: str, policy: BootPolicy | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.host = host
        self.policy = policy or BootPolicy()
        self.clock = clock
        self.step: Step | None = None
        self.ready: Announce | None = None  # this boot's announce; None again after a reboot
        self.announces: list[Announce] = []
        self.reboots = 0
        self.findings: list[Finding] = []
        self._entered_at: float | None = None
        self._deadline_reported = False
        self._starts_seen: set[int] = set()
        self._entries: Counter[Step] = Counter()  # early-step entries since the last READY
        self._bootloop_reported = False
        self._panicked = False
        self._allowed_reboots = self.policy.allowed_reboots
        self._tail: deque[str] = deque(maxlen=max(1, self.policy.evidence_lines))
        self._last_line = ""
        self._timeline: deque[TimelineEntry] = deque(maxlen=MAX_KEPT)
        self._rules, self._matchers = self._build_matchers()

    # ---- public API

    def feed(self, line: str, at: float | None = None) -> list[Finding]:
        """Take one console line (without its newline); return the findings it caused."""
        return self.feed_lines((line,), at)

    def feed_lines(self, lines: Sequence[str], at: float | None = None, *,
                   cleaned: Sequence[str] | None = None,
                   cleaned_joined: str | None = None) -> list[Finding]:
        """Take a block of lines that arrived together; return the findings they caused.

        `cleaned`: the same lines through clean_lines, when the caller has them already;
        `cleaned_joined`: those joined by newlines (clean_block gives both), which saves
        joining them again for the matcher.
        """
        at = self.clock() if at is None else at
        findings = self.check_deadlines(at)
        if not lines:
            return findings
        text: Sequence[str]
        if cleaned is None:
            text, cleaned_joined = clean_block(lines)
        else:
            text = cleaned
        done = 0  # lines already in the tail
        start = 0
        while start < len(text):
            # The whole block first: on a console that shows nothing of the boot (most
            # reads once a host is up) one Aho-Corasick pass finds nothing and that is
            # all. After the boot moved on (other patterns apply), slices bound the work
            # thrown away when it moves on again.
            phase = self._phase()
            if start == 0:
                end, found = len(text), self._matchers[phase].scan(text, cleaned_joined)
            else:
                end = min(start + _SCAN_SLICE, len(text))
                found = self._matchers[phase].scan(text[start:end])
            next_start = end
            for offset, matched in found:
                index = start + offset
                self._keep(lines, done, index + 1)
                done = index + 1
                findings += self._on_line(text[index], matched, phase, at)
                if self._phase() != phase:
                    next_start = index + 1
                    break
            start = next_start
        self._keep(lines, done, len(lines))
        for candidate in reversed(text):
            if candidate.strip():
                self._last_line = candidate.strip()
                break
        return findings

    def _keep(self, lines: Sequence[str], start: int, end: int) -> None:
        """lines[start:end] into the evidence tail, which only keeps its last maxlen: the
        older ones are never copied (a 1 MB read is ~15,000 lines, the tail 50)."""
        maxlen = self._tail.maxlen or 0
        self._tail.extend(evidence_lines(lines[max(start, end - maxlen):end]))

    def check_deadlines(self, now: float | None = None) -> list[Finding]:
        """A deadline finding if the current step has lasted longer than the policy allows."""
        now = self.clock() if now is None else now
        step = self.step
        if step is None or self._entered_at is None or self._deadline_reported:
            return []
        limit = self.policy.deadlines.get(step)
        if limit is None or now - self._entered_at <= limit:
            return []
        self._deadline_reported = True
        return [self._finding(
            "deadline", Severity.CRITICAL,
            f"{AWAITING.get(step, 'no progress')} {limit:g} s after {step.label}; "
            f"last console line: {self._last_line!r}", now)]

    def power_on(self, at: float | None = None) -> None:
        """The harness powered the host on (or cycled it): a restart now is expected."""
        at = self.clock() if at is None else at
        if self.step is not None and self.step > Step.POWER_ON:
            self.reboots += 1
        self._new_boot()
        self._enter(Step.POWER_ON, at, "(power on)")

    def attached_running(self, at: float | None = None) -> None:
        """vet attached to a host that was already up: any restart from now on is a reboot."""
        at = self.clock() if at is None else at
        self._enter(Step.USERSPACE, at, "(already running when vet attached)")

    def expect_reboots(self, count: int = 1) -> None:
        """Allow `count` more restarts from userspace (a stage that reboots on purpose)."""
        self._allowed_reboots += count

    def timeline(self) -> list[TimelineEntry]:
        """Each step entered (and re-entered), in order, for the report."""
        return list(self._timeline)

    def tail(self) -> list[str]:
        """The last console lines (raw), as attached to findings."""
        return list(self._tail)

    # ---- matching

    def _build_matchers(self) -> tuple[list[_Rule], dict[str, LineMatcher]]:
        policy = self.policy
        rules = [_Rule("panic", None, None, PANIC_PATTERN)]
        rules += [_Rule("error", None, e, e.regex) for e in policy.netboot_errors]
        rules += [_Rule("error", None, e, e.regex) for e in policy.os_errors]
        for step in sorted(policy.step_patterns):
            patterns = policy.step_patterns[step]
            rules += [_Rule("start", step, None, regex) for regex in patterns.starts]
            rules += [_Rule("show", step, None, regex) for regex in patterns.shows]
        netboot = set(policy.netboot_errors)
        os_errors = set(policy.os_errors)
        # Which rules matter depends on how far the boot got: network-boot errors only
        # before the kernel; once userspace is up, only a restart, the announce, a panic.
        self._rule_ids: dict[str, list[int]] = {
            "netboot": [n for n, r in enumerate(rules) if r.error is None or r.error in netboot],
            "os": [n for n, r in enumerate(rules)
                   if r.kind in ("panic", "start") or r.error in os_errors
                   or (r.kind == "show" and r.step is not None and r.step > Step.KERNEL)],
            "up": [n for n, r in enumerate(rules) if r.kind in ("panic", "start")],
        }
        matchers = {phase: LineMatcher([rules[n].regex for n in ids])
                    for phase, ids in self._rule_ids.items()}
        return rules, matchers

    def _phase(self) -> str:
        if self.step is None or self.step < Step.KERNEL:
            return "netboot"
        return "os" if self.step < Step.USERSPACE else "up"

    def _on_line(self, text: str, matched: list[int], phase: str,
                 at: float) -> list[Finding]:
        rules = [(self._rule_ids[phase][n], self._rules[self._rule_ids[phase][n]])
                 for n in matched]
        findings: list[Finding] = []
        step_rule = next(((rid, r) for rid, r in rules if r.step is not None), None)
        if step_rule is not None:
            rule_id, rule = step_rule
            assert rule.step is not None
            findings += self._on_step(rule.step, rule_id, rule.kind == "start", text, at)
        error = next((r.error for _, r in rules if r.error is not None), None)
        if error is not None:
            where = self.step.label if self.step is not None else "boot"
            findings.append(self._finding(
                error.kind, error.severity,
                f"{error.kind.replace('-', ' ')} during {where}: {text.strip()!r}", at))
        if any(r.kind == "panic" for _, r in rules) and not self._panicked:
            self._panicked = True
            where = self.step.label if self.step is not None else "boot"
            findings.append(self._finding(
                "panic", Severity.CRITICAL, f"kernel panic during {where}: {text.strip()!r}", at))
        return findings

    # ---- steps

    def _on_step(self, step: Step, rule_id: int, starts: bool, text: str,
                 at: float) -> list[Finding]:
        current = self.step
        if step is Step.READY:
            announce = parse_announce(text)
            if announce is None:
                return []
            self.ready = announce
            self.announces.append(announce)
            if current is not Step.READY:
                self._enter(Step.READY, at, text)
            self._entries.clear()
            self._bootloop_reported = False
            return []
        if current is None or step > current:
            self._enter(step, at, text)
            self._starts_seen = {rule_id} if starts else set()
            return self._count_entry(step, at)
        if not starts or step not in EARLY_STEPS:
            return []  # a later progress line, or one this boot already showed
        if step == current and rule_id not in self._starts_seen:
            self._starts_seen.add(rule_id)  # another banner of the same pass
            return []
        return self._restart(step, current, rule_id, text, at)

    def _restart(self, step: Step, came_from: Step, rule_id: int, text: str,
                 at: float) -> list[Finding]:
        """The host started booting again while at `came_from`."""
        findings: list[Finding] = []
        self.reboots += 1
        if came_from not in self.policy.reboot_ok_from:
            if self._allowed_reboots > 0:
                self._allowed_reboots -= 1
            else:
                before = self._last_nonblank(skip=1)
                findings.append(self._finding(
                    "unexpected-reboot", Severity.CRITICAL,
                    f"unexpected reboot: the host was at {came_from.label} and restarted "
                    f"({step.label}: {text.strip()!r}); no reboot was allowed there; last "
                    f"console line before it: {before!r}", at))
        self._new_boot()
        self._enter(step, at, text)
        self._starts_seen = {rule_id}
        return findings + self._count_entry(step, at)

    def _new_boot(self) -> None:
        self.ready = None
        self._panicked = False

    def _enter(self, step: Step, at: float, text: str) -> None:
        self.step = step
        self._entered_at = at
        self._deadline_reported = False
        self._timeline.append(TimelineEntry(step, at, text.strip()[:500]))

    def _count_entry(self, step: Step, at: float) -> list[Finding]:
        if step not in EARLY_STEPS:
            return []
        self._entries[step] += 1
        count = self._entries[step]
        if count < self.policy.bootloop_after or self._bootloop_reported:
            return []
        self._bootloop_reported = True
        return [self._finding(
            "bootloop", Severity.CRITICAL,
            f"boot loop: {step.label} started {count} times without reaching VET-READY; "
            f"last console line: {self._last_nonblank()!r}", at)]

    def _last_nonblank(self, skip: int = 0) -> str:
        """The last non-blank console line, leaving out the newest `skip` lines."""
        for line in itertools.islice(reversed(self._tail), skip, None):
            text = clean_line(line).strip()
            if text:
                return text
        return self._last_line

    def _finding(self, kind: str, severity: Severity, what: str, at: float) -> Finding:
        finding = Finding(kind=kind, severity=severity, step=self.step,
                          message=f"{self.host}: {what}", evidence=tuple(self._tail), at=at)
        if len(self.findings) < MAX_KEPT:
            self.findings.append(finding)
        return finding
