"""Stages that passed with warnings: marked in the terminal table, listed below it and in
the JSON summary; read back from the judgements and spec diffs the stages stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.judge.core import Reasons
from harness.models import Severity, SpecDifference
from harness.report import build_summary
from harness.states import State
from harness.store import Store
from harness.summary import SHOWN_WARNINGS, render_summary, stage_warnings
from tests.unit.test_report_json import validator

T0 = 1_790_000_000.0
REDUNDANCY = "BMC sensor 'PS Redundancy' (entity 7.1): Redundancy Lost: power redundancy is lost"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "vet.sqlite")
    s.start_run("w1", "quick", "inventory/virtual", params={"profile": "quick"},
                controller="ctl", vet_version="0.1.0")
    for name in ("vm-bad", "vm-good"):
        s.register_host("w1", name)
        s.transition("w1", name, State.QUEUED, "queued")
    psu = Reasons()
    psu.warn(REDUNDANCY)
    psu.warn("BMC sensor 'PSU2 Status' (entity 10.2): Predictive failure: plan a replacement")
    psu.note("7 sensors, 7 PSU-related")
    s.add_record("w1", "vm-good", "psu", "PSU judgement", psu.judgement())
    s.add_record("w1", "vm-good", "psu", "BMC sensors", {"verdict": "not a judgement"})
    s.record_test("w1", "vm-good", "psu", "suites/test_psu.py::t[vm-good]", "passed", T0, 2.0)
    s.add_spec_diffs("w1", "vm-good", [
        SpecDifference("nic 52:54:00:77:00:11 speed_mbps", "1000", "100", Severity.WARNING,
                       "link is slower than expected (cable, switch port?)"),
        SpecDifference("memory.total_gib", "0.75", "0.75", None, "matches")])
    s.record_test("w1", "vm-good", "spec", "suites/test_spec.py::t[vm-good]", "passed", T0, 1.0)
    s.record_test("w1", "vm-good", "cpu", "suites/test_cpu.py::t[vm-good]", "passed", T0, 9.0)
    # Nested judgements (per disk), more warnings than the table shows, one repeated.
    disks = {}
    for n in range(SHOWN_WARNINGS + 2):
        judged = Reasons()
        judged.warn(f"/dev/sd{'abcdefgh'[n]}: attribute 199 (interface CRC) raw {n + 1}")
        judged.warn(REDUNDANCY.replace("PS", "smart"))
        disks[f"disk{n}"] = judged.judgement()
    s.add_record("w1", "vm-good", "smart", "SMART verdicts", disks)
    s.record_test("w1", "vm-good", "smart", "suites/test_smart.py::t[vm-good]", "passed", T0, 3.0)
    # A failed stage keeps its warnings in the JSON; the table shows why it failed.
    failed = Reasons()
    failed.fail("PSU 2 failure detected")
    failed.warn("redundancy lost")
    s.add_record("w1", "vm-bad", "psu", "PSU judgement", failed.judgement())
    s.record_test("w1", "vm-bad", "psu", "suites/test_psu.py::t[vm-bad]", "failed", T0, 2.0,
                  "PSU 2 failure detected")
    return s


def test_warnings_are_read_back_from_judgements_and_spec_diffs(store: Store) -> None:
    warned = stage_warnings(store, "w1")
    assert warned["vm-good"]["psu"] == [
        REDUNDANCY,
        "BMC sensor 'PSU2 Status' (entity 10.2): Predictive failure: plan a replacement"]
    assert warned["vm-good"]["spec"] == [
        "nic 52:54:00:77:00:11 speed_mbps: link is slower than expected (cable, switch port?)"]
    assert len(warned["vm-good"]["smart"]) == SHOWN_WARNINGS + 3  # the repeated one once
    assert "cpu" not in warned["vm-good"]
    assert warned["vm-bad"] == {"psu": ["redundancy lost"]}


def test_the_table_marks_and_lists_them(store: Store) -> None:
    text = render_summary(store, "w1")
    lines = text.splitlines()
    good = next(line for line in lines if line.startswith("vm-good"))
    bad = next(line for line in lines if line.startswith("vm-bad"))
    assert "passed (2w) 2s" in good and "passed (1w) 1s" in good and "passed 9s" in good
    assert f"passed ({SHOWN_WARNINGS + 3}w) 3s" in good
    assert "FAILED 2s" in bad and "(1w)" not in bad
    assert max(len(line) for line in lines[:3]) < 120  # still one terminal line per host
    notes = lines[lines.index("passed with warnings (Nw):") + 1:]
    assert f"  vm-good psu: {REDUNDANCY}" in notes
    smart = [line for line in notes if line.startswith("  vm-good smart: ")]
    assert len(smart) == SHOWN_WARNINGS + 1 and "/dev/sda" in smart[0]
    assert "  vm-good smart: ... and 3 more (the JSON summary lists them all)" in notes
    assert not any("redundancy lost" in line for line in notes)  # vm-bad failed: see why
    assert "  vm-bad psu: PSU 2 failure detected" in lines[lines.index("why:") + 1:]


def test_the_json_summary_lists_every_warning(store: Store) -> None:
    summary = build_summary(store, "w1", now=T0 + 60)
    validator().validate(summary)
    stages = {(h["name"], s["stage"]): s for h in summary["hosts"] for s in h["stages"]}
    assert stages[("vm-good", "psu")]["warnings"][0] == REDUNDANCY
    assert len(stages[("vm-good", "smart")]["warnings"]) == SHOWN_WARNINGS + 3
    assert stages[("vm-good", "cpu")]["warnings"] == []
    assert stages[("vm-bad", "psu")]["warnings"] == ["redundancy lost"]


def test_a_run_without_warnings_has_no_warning_section(tmp_path: Path) -> None:
    s = Store(tmp_path / "vet.sqlite")
    s.start_run("w2", "quick", "inventory/virtual", params={}, controller="ctl",
                vet_version="0.1.0")
    s.register_host("w2", "vm-good")
    s.record_test("w2", "vm-good", "cpu", "suites/test_cpu.py::t[vm-good]", "passed", T0, 9.0)
    text = render_summary(s, "w2")
    assert "warnings" not in text and "(" not in text
