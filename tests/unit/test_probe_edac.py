"""EDAC sysfs counters: the collection command, a skx_edac sample, no EDAC, bad input, fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.judge import judge_edac
from harness.probes._common import ParseError
from harness.probes.edac import EDAC_COMMAND, parse_edac

DATA = Path(__file__).resolve().parents[1] / "data" / "probes"
SKX = (DATA / "edac-skx-ce.txt").read_text(encoding="utf-8")


def test_command_reads_every_counter_file_without_brace_expansion() -> None:
    assert EDAC_COMMAND.startswith("grep -sH . ")
    assert "{" not in EDAC_COMMAND and "}" not in EDAC_COMMAND
    for name in ("mc*/ce_count", "mc*/ue_count", "mc*/ce_noinfo_count", "mc*/ue_noinfo_count",
                 "mc*/dimm*/dimm_label", "mc*/dimm*/dimm_ce_count", "mc*/rank*/dimm_ue_count"):
        assert f"/sys/devices/system/edac/mc/{name}" in EDAC_COMMAND


def test_skx_two_controllers_four_dimms() -> None:
    counters = parse_edac(SKX)
    assert counters.available and [c.index for c in counters.controllers] == [0, 1]
    mc0 = counters.controllers[0]
    assert (mc0.name, mc0.size_mb, mc0.ce_count, mc0.ue_count) == (
        "Skylake Socket#0 IMC#0", 65536, 14, 0)
    assert (mc0.ce_noinfo_count, mc0.ue_noinfo_count) == (0, 0)
    assert [(d.kind, d.index, d.name, d.ce_count) for d in mc0.dimms] == [
        ("dimm", 0, "CPU_SrcID#0_MC#0_Chan#0_DIMM#0", 14),
        ("dimm", 3, "CPU_SrcID#0_MC#0_Chan#1_DIMM#0", 0)]
    assert (counters.ce_total, counters.ue_total) == (14, 0)
    dimm = counters.dimm("CPU_SrcID#0_MC#1_Chan#0_DIMM#0")
    assert dimm is not None and (dimm.controller, dimm.size_mb) == (1, 32768)


def test_rank_directories_and_missing_labels() -> None:
    counters = parse_edac("/sys/devices/system/edac/mc/mc0/rank2/dimm_ue_count:1\n")
    (controller,) = counters.controllers
    (rank,) = controller.dimms
    assert (rank.kind, rank.index, rank.ue_count, rank.label, rank.name) == (
        "rank", 2, 1, None, "mc0/rank2")
    assert controller.ce_count is None


def test_no_edac_driver_is_an_empty_result() -> None:
    assert parse_edac("").available is False
    assert parse_edac("\n").controllers == ()


@pytest.mark.parametrize(("text", "message"), [
    ("grep: /sys/devices/system/edac/mc: No such file or directory\n", "line 1: expected"),
    ("/sys/devices/system/edac/mc/mc0/ce_count:lots\n", "should be a count"),
    ("/sys/devices/system/edac/mc/mc0/reset_counters:1\n", "unexpected controller file"),
    ("/sys/devices/system/edac/mc/mc0/dimm0/dimm_location:channel 0\n", "unexpected dimm file"),
    ("/sys/devices/system/edac/mc/mc0/ce_count:1\n/sys/devices/system/edac/mc/mc0/ue_co\n",
     "line 2: expected"),
])
def test_malformed_input_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_edac(text)
    assert info.value.tool == "edac"


def _check(text: str) -> None:
    try:
        counters = parse_edac(text)
    except ParseError as error:
        assert error.tool == "edac"
        return
    judge_edac(counters)
    assert counters.ce_total >= 0 or any((c.ce_count or 0) < 0 for c in counters.controllers)


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _check(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SKX.splitlines()) | st.text(max_size=20), max_size=12),
       st.sampled_from(["", "9" * 45, "-1", "x", " 3 "]))
def test_fuzz_shuffled_lines(lines: list[str], value: str) -> None:
    _check("\n".join(line.rsplit(":", 1)[0] + ":" + value if value and ":" in line else line
                     for line in lines))
