"""LineMatcher and clean_lines: the fast block paths give what line-by-line matching gives.

LineMatcher finds the required literals of all patterns in one Aho-Corasick pass over a
block of lines and runs the real regexes only on lines holding one. These tests pin what
that must not change: a literal split across two lines (or two CR segments) matches
nothing, overlapping literals are all seen, patterns without a literal still match,
non-ASCII blocks map offsets to the right lines, and everything equals a plain
`regex.search(line)` per line.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.console.boot import (
    DEFAULT_NETBOOT_ERRORS,
    DEFAULT_OS_ERRORS,
    DEFAULT_STEP_PATTERNS,
    PANIC_PATTERN,
    LineMatcher,
    clean_block,
    clean_line,
    clean_lines,
    evidence_line,
)
from harness.console.watch import DEATH_PATTERNS, ConsoleWatch

NO_LITERAL = r"\d{3}-\d{4}"  # nothing of 3 plain characters: searched over the whole block
NON_ASCII = r"Fehler: Überlauf"


def _regexes() -> list[str]:
    regexes = [p.regex for p in DEATH_PATTERNS] + [PANIC_PATTERN]
    regexes += [e.regex for e in (*DEFAULT_NETBOOT_ERRORS, *DEFAULT_OS_ERRORS)]
    for patterns in DEFAULT_STEP_PATTERNS.values():
        regexes += [*patterns.starts, *patterns.shows]
    return [*regexes, NO_LITERAL, NON_ASCII, r"abcd", r"cdef"]


REGEXES = _regexes()
MATCHER = LineMatcher(REGEXES)
COMPILED = [re.compile(regex, re.MULTILINE) for regex in REGEXES]


def line_by_line(lines: list[str]) -> list[tuple[int, list[int]]]:
    """What scan() must return: each regex searched in each line on its own."""
    found = []
    for index, line in enumerate(lines):
        matched = [n for n, regex in enumerate(COMPILED) if regex.search(line)]
        if matched:
            found.append((index, matched))
    return found


def test_a_literal_split_across_two_lines_matches_nothing() -> None:
    matcher = LineMatcher([r"Kernel panic - not syncing", r"BUG: \w+"])
    assert matcher.scan(["[ 1.0] Kernel panic - not", " syncing: x", "BUG:", " oops"]) == []
    assert matcher.scan(["Kernel panic - not syncing"]) == [(0, [0])]


def test_a_literal_split_by_a_carriage_return_matches_nothing() -> None:
    # A CR redraws the line: each segment is text of its own, ^ anchors each one.
    cleaned = clean_lines(["Kernel panic - not\r syncing", "10%\r[  OK  ] Started x.",
                           "Hard LOC\rKUP"])
    assert cleaned == ["Kernel panic - not\n syncing", "10%\n[  OK  ] Started x.",
                       "Hard LOC\nKUP"]
    matcher = LineMatcher([r"Kernel panic - not syncing", r"^\[  OK  \] ", r"[Hh]ard LOCKUP"])
    assert matcher.scan(cleaned) == [(1, [1])]


def test_overlapping_literals_in_one_line_are_all_seen() -> None:
    # A leftmost search reports "abcd" in "abcdef" and goes on after it, past "cdef".
    matcher = LineMatcher([r"abcd", r"cdef"])
    assert matcher.scan(["x", "zabcdefz", "cdef"]) == [(1, [0, 1]), (2, [1])]
    assert MATCHER.scan(["Hard LOCKUPCIe Bus Error: severity=Corrected"]) == line_by_line(
        ["Hard LOCKUPCIe Bus Error: severity=Corrected"])


def test_patterns_without_a_literal_match_in_blocks_with_and_without_hits() -> None:
    matcher = LineMatcher([r"panic", NO_LITERAL])
    assert matcher.scan(["call 555-1234", "quiet"]) == [(0, [1])]
    assert matcher.scan(["panic", "é", "call 555-1234 panic"]) == [(0, [0]), (2, [0, 1])]


def test_offsets_in_a_non_ascii_block_land_on_the_right_line() -> None:
    lines = ["€" * 50, "\ufffd garbage from line noise", "ok", "x Fehler: Überlauf",
             "[ 9.1] Kernel panic - not syncing: é"]
    assert MATCHER.scan(lines) == line_by_line(lines) != []
    assert [index for index, _ in MATCHER.scan(lines)] == [3, 4]


def test_a_non_ascii_literal_is_not_looked_for_in_ascii_blocks_but_found_elsewhere() -> None:
    matcher = LineMatcher([NON_ASCII, r"panic"])
    assert matcher.scan(["Fehler: Uberlauf", "panic"]) == [(1, [1])]
    assert matcher.scan(["Fehler: Überlauf", "panic"]) == [(0, [0]), (1, [1])]


def test_a_literal_with_a_newline_is_searched_over_the_block() -> None:
    # A literal newline in a pattern can only match a cleaned line's CR segments.
    matcher = LineMatcher(["oops\nagain"])
    assert matcher.scan(["oops", "again"]) == []
    assert matcher.scan(clean_lines(["x", "oops\ragain"])) == [(1, [0])]


def test_the_watch_reports_the_line_a_non_ascii_block_holds_its_death_string_in() -> None:
    watch = ConsoleWatch(host="node07")
    lines = [f"[{n:6}.0] déjà vu {n}" for n in range(3000)]
    lines[2777] = "[ 2777.0] BUG: unable to handle page fault for address: ffff"
    findings = watch.feed_lines(lines, at=1.0)
    assert [f.kind for f in findings] == ["bug"]
    assert findings[0].evidence[-1] == lines[2777]
    assert "2777" in findings[0].message


@pytest.mark.parametrize("lines", [
    [], [""], ["", ""], ["a", "bc"], ["x" * 5000, "y"], ["é\r", "\x1b[0m", "z" * 4096],
])
def test_the_watch_counts_exactly_what_its_ring_holds(lines: list[str]) -> None:
    watch = ConsoleWatch()
    watch.feed_lines(lines, at=1.0)
    watch.feed_lines(["more"], at=2.0)
    assert watch.memory() == (len(lines) + 1, sum(len(evidence_line(x)) for x in lines) + 4)


@pytest.mark.parametrize("lines", [
    ["plain", "lines"],
    ["crlf\r", "ends\r"],
    ["\x1b[0;32m  OK  \x1b[0m", "plain", "tab\there"],
    ["a\rb\r", "c"],
    ["é\x1b[1m", "x"],
    ["", "", "\x1b[0m"],
])
def test_clean_block_gives_its_lines_joined_when_it_says_it_has_them(lines: list[str]) -> None:
    cleaned, joined = clean_block(lines)
    assert cleaned == clean_lines(lines)
    assert joined is None or joined == "\n".join(cleaned)


def test_a_line_that_ends_in_a_newline_is_cleaned_as_before() -> None:
    # Readers split on newlines, so this never comes from a console; kept as it was.
    assert clean_lines(["ab\n", "\x1b[0mc"]) == ["ab", "c"]
    assert clean_lines(["a\nb", "\x1b[0mc"]) == ["a\nb", "c"]
    assert clean_lines(["ab\n", "c"]) == ["ab\n", "c"]


PIECES = [
    "a", "Q", " ", "0", "555-1234", "\t", "\r", "\x1b[0;32m", "\x1b]0;t\x07", "\x07",
    "\x85", "é", "€", "\ufffd", "Kernel panic - not syncing", "Kernel panic - not", " syncing",
    "EDAC MC0: 1 UE", "EDAC ", " CE ", "BUG: ", "\\bBUG", "NMI watchdog: BUG", "Hard LOCKUP",
    "Hard LOC", "PCIe Bus Error: severity=Corrected", "Machine Check", "general protection fault",
    "traps: x general protection fault ip:", "[  OK  ] ", "systemd[1]: ", "SeaBIOS (version ",
    "Linux version 6", "VET-READY ip=10.0.0.1", "iPXE initialising devices", "Nothing to boot",
    "Fehler: Überlauf", "abcd", "cdef", "abcdef",
]
LINES = st.lists(st.lists(st.sampled_from(PIECES), max_size=8).map("".join), max_size=30)


@settings(max_examples=300, deadline=None)
@given(LINES)
def test_scan_equals_searching_each_line_on_its_own(lines: list[str]) -> None:
    cleaned, joined = clean_block(lines)
    assert MATCHER.scan(cleaned) == line_by_line(cleaned)
    assert MATCHER.scan(cleaned, joined) == line_by_line(cleaned)


@settings(max_examples=300, deadline=None)
@given(LINES)
def test_cleaning_a_block_equals_cleaning_each_line(lines: list[str]) -> None:
    assert clean_lines(lines) == [clean_line(line) for line in lines]
