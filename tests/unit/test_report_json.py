"""The JSON run summary (vet-run-summary/2) built from a real store, checked against the
JSON schema published in docs/ (a field the code adds without documenting it fails here)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from harness.models import Measurement, Severity, SpecDifference
from harness.report import SCHEMA, build_summary, write_summary
from harness.states import State
from harness.store import Store

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "vet-run-summary-2.schema.json"
T0 = 1_790_000_000.0


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _walk(store: Store, host: str, *states: State, stage: str | None = None) -> None:
    for state in states:
        store.transition("r1", host, state, f"to {state.value}", stage)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A run with a host that passed (booted over PXE) and one held after a spec mismatch."""
    s = Store(tmp_path / "vet.sqlite")
    s.start_run("r1", "quick", "inventory/virtual", params={"profile": "quick"},
                controller="ctl", vet_version="0.1.0")
    for name in ("vm-bad", "vm-good"):
        s.register_host("r1", name)
        _walk(s, name, State.QUEUED, State.POWER_ON, State.BOOTING)
    s.add_measurements("r1", "vm-good", "boot", [
        Measurement("boot_vet_ready_s", 31.5, "s"), Measurement("boot_ipxe_s", 2.25, "s"),
        Measurement("boot_kernel_s", 11.0, "s")])
    _walk(s, "vm-good", State.INVENTORY_CHECK, stage="inventory")
    s.record_test("r1", "vm-good", "inventory", "suites/test_inventory.py::t[vm-good]",
                  "passed", T0, 4.0)
    _walk(s, "vm-good", State.CPU_STRESS, stage="cpu")
    s.record_test("r1", "vm-good", "cpu", "suites/test_cpu.py::a[vm-good]", "passed", T0 + 5, 20.0)
    s.record_test("r1", "vm-good", "cpu", "suites/test_cpu.py::b[vm-good]", "skipped", T0 + 26,
                  0.5, "no sensor")
    s.add_measurements("r1", "vm-good", "cpu", [Measurement("cpu_bogo_ops_per_s", 123.4, "ops/s")])
    _walk(s, "vm-good", State.REPORTING, State.COMPLETED)

    _walk(s, "vm-bad", State.INVENTORY_CHECK, State.SPEC_VALIDATE, stage="spec")
    s.add_spec_diffs("r1", "vm-bad", [
        SpecDifference("cpu.threads", "2", "1", Severity.CRITICAL, "1 found, 2 expected"),
        SpecDifference("memory.total_gib", "0.5", "0.5", None, "matches")])
    s.record_test("r1", "vm-bad", "spec", "suites/test_spec.py::t[vm-bad]", "failed", T0 + 3,
                  1.5, "cpu.threads: 1 found, 2 expected")
    _walk(s, "vm-bad", State.FAILED, stage="spec")
    s.query("INSERT INTO holds (run_id, host, stage, reason, opened_at, expires_at) "
            "VALUES ('r1', 'vm-bad', 'spec', 'cpu.threads', ?, ?)", (T0 + 5, T0 + 86_405))
    return s


def host(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return next(h for h in summary["hosts"] if h["name"] == name)


def test_summary_matches_the_published_schema(store: Store) -> None:
    summary = build_summary(store, "r1", now=T0 + 60)
    validator().validate(summary)
    assert summary["schema"] == SCHEMA == "vet-run-summary/2"
    assert summary["totals"] == {"hosts": 2, "passed": 1, "failed": 1, "incomplete": 0,
                                 "held": 1}


def test_schema_rejects_what_the_docs_do_not_describe(store: Store) -> None:
    good = build_summary(store, "r1", now=T0 + 60)
    v = validator()
    for breaks in (lambda s: host(s, "vm-good").update(secret="x"),
                   lambda s: host(s, "vm-bad")["hold"].update(status="maybe"),
                   lambda s: host(s, "vm-good")["stages"][0].pop("started_at"),
                   lambda s: host(s, "vm-good")["boot_timeline"].append({"step": "x"}),
                   lambda s: s.update(schema="vet-run-summary/1")):
        bad = copy.deepcopy(good)
        breaks(bad)
        assert not v.is_valid(bad)


def test_host_details(store: Store) -> None:
    summary = build_summary(store, "r1", now=T0 + 60)
    good, bad = host(summary, "vm-good"), host(summary, "vm-bad")
    assert good["verdict"] == "passed" and good["hold"] is None
    assert good["boot_timeline"] == [{"step": "ipxe", "after_s": 2.25},
                                     {"step": "kernel", "after_s": 11.0},
                                     {"step": "vet_ready", "after_s": 31.5}]
    cpu = next(s for s in good["stages"] if s["stage"] == "cpu")
    assert cpu["outcome"] == "passed" and cpu["duration_s"] == 20.5
    assert cpu["started_at"].startswith("2026-09-21T")
    assert [t["outcome"] for t in cpu["tests"]] == ["passed", "skipped"]
    # ends with its last test: T0 + 26 + 0.5
    assert cpu["ended_at"] == "2026-09-21T14:13:46.500+00:00"

    assert bad["verdict"] == "failed" and bad["failed_stage"] == "spec"
    assert bad["reason"] == "cpu.threads: 1 found, 2 expected"
    assert [(d["item"], d["severity"]) for d in bad["spec_diffs"]] == [
        ("cpu.threads", "critical"), ("memory.total_gib", None)]
    assert bad["hold"]["status"] == "open" and bad["hold"]["stage"] == "spec"
    assert bad["boot_timeline"] == []


def test_hold_expiry_and_release(store: Store) -> None:
    assert host(build_summary(store, "r1", now=T0 + 90_000), "vm-bad")["hold"]["status"] \
        == "expired"
    store.query("UPDATE holds SET released_at = ?, released_by = 'alice'", (T0 + 100,))
    summary = build_summary(store, "r1", now=T0 + 200)
    validator().validate(summary)
    hold = host(summary, "vm-bad")["hold"]
    assert hold["status"] == "released" and hold["released_by"] == "alice"
    assert summary["totals"]["held"] == 0


def test_written_file_is_the_summary(store: Store, tmp_path: Path) -> None:
    path = write_summary(store, "r1", tmp_path / "out" / "summary.json")
    data = json.loads(path.read_text())
    validator().validate(data)
    assert [h["name"] for h in data["hosts"]] == ["vm-bad", "vm-good"]
    assert not list(path.parent.glob("*.tmp"))
