"""Allure run metadata: categories sort real exceptions' messages the way Allure 3 will
(its matchers are the same regular expressions), and environment.properties is valid."""

from __future__ import annotations

import json
import re
import traceback
from pathlib import Path

import pytest

from harness.console.channel import ChannelError, CommandTimeout
from harness.errors import ConsoleDeath, ToolMissing
from harness.netboot import BootFailed
from harness.power import PowerConfigError
from harness.report_allure import (
    CATEGORIES,
    allure2_categories,
    allure3_categories,
    environment,
    properties_text,
    write_run_metadata,
)


def allure_message(exc: BaseException) -> str:
    """What allure-pytest puts in statusDetails.message: format_exception_only."""
    return "".join(traceback.format_exception_only(type(exc), exc))


def category(status: str, message: str, suite: str) -> str | None:
    """First matching Allure 3 rule, evaluated as Allure's matchObjectMatcher does."""
    for rule in allure3_categories():
        for m in rule["matchers"]:
            if status not in m["statuses"]:
                continue
            if "message" in m and not re.search(m["message"], message):
                continue
            if any(not re.search(rx, suite) for name, rx in m.get("labels", {}).items()
                   if name == "suite"):
                continue
            return str(rule["name"])
    return None


INFRA = "Infrastructure (PXE, power, console)"


@pytest.mark.parametrize(("status", "exc", "suite", "expected"), [
    ("broken", BootFailed("node07: no DHCP offer in 120 s", []), "inventory", INFRA),
    ("broken", PowerConfigError("vet_power.port: ..."), "inventory", INFRA),
    ("broken", ChannelError("node07: cannot connect: refused"), "cpu", INFRA),
    ("broken", CommandTimeout("node07: `fio` did not finish in 60 s"), "storage", INFRA),
    ("failed", AssertionError("cpu.threads: 2 found, 64 expected"), "spec", "Spec mismatches"),
    ("failed", AssertionError("verification failed: 3 errors"), "memory", "Hardware faults"),
    ("broken", ToolMissing("`fio` is not installed"), "storage", "Harness errors"),
    ("broken", KeyError("duration_s"), "cpu", "Harness errors"),
    ("passed", AssertionError("-"), "cpu", None),
])
def test_failures_land_in_their_category(status: str, exc: BaseException, suite: str,
                                         expected: str | None) -> None:
    assert category(status, allure_message(exc), suite) == expected


def test_console_death_is_a_hardware_fault() -> None:
    # the plugin turns it into pytest.fail(f"ConsoleDeath: {exc}"), which Allure shows as
    death = ConsoleDeath("host n1: Kernel panic (console, panic)")
    message = f"Failed: {type(death).__name__}: {death}"
    assert category("failed", message, "cpu") == "Hardware faults"


def test_both_renderings_name_the_same_categories() -> None:
    names = [c.name for c in CATEGORIES]
    assert [r["name"] for r in allure3_categories()] == names
    assert len({r["id"] for r in allure3_categories()}) == len(names)
    v2 = allure2_categories()
    assert [c["name"] for c in v2] == [n for n in names if n != "Spec mismatches"]
    infra = v2[0]["messageRegex"]
    assert re.fullmatch(infra, "harness.netboot.BootFailed: n1: no DHCP\nmore", re.DOTALL)
    assert not re.fullmatch(infra, "AssertionError: no BootFailed here", re.DOTALL)


def test_properties_escape_what_the_format_needs() -> None:
    text = properties_text({"a key:x=y": "line1\nline2 \\ é", "b": " lead"})
    assert text == "a\\ key\\:x\\=y=line1\\nline2 \\\\ \\u00e9\nb=\\ lead\n"
    assert text.isascii()


def test_environment_and_files(tmp_path: Path) -> None:
    env = environment("r9", "quick", "inventory/virtual", ["b", "a"], netbooted=False,
                      local=False)
    assert env["run.id"] == "r9" and env["run.hosts"] == "a, b"
    assert env["package.vet-harness"]
    results = tmp_path / "allure-results"
    write_run_metadata(results, env)
    lines = (results / "environment.properties").read_text().splitlines()
    assert "run.profile=quick" in lines and "run.inventory=inventory/virtual" in lines
    assert json.loads((results / "categories.json").read_text()) == allure2_categories()
