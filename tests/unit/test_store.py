from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from harness.errors import IllegalTransition, StoreError
from harness.models import Measurement, Severity, SpecDifference
from harness.states import State
from harness.store import SCHEMA_VERSION, Store


def test_fresh_store_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    with Store(tmp_path / "vet.sqlite") as store:
        assert store.schema_version == SCHEMA_VERSION
        mode = store.query("PRAGMA journal_mode")[0]["journal_mode"]
        assert mode == "wal"


def test_reopening_keeps_rows_and_does_not_migrate_twice(tmp_path: Path) -> None:
    path = tmp_path / "vet.sqlite"
    with Store(path) as store:
        store.start_run("r1", "quick", "inventory/local")
    with Store(path) as store:
        assert store.run("r1") is not None
        assert store.schema_version == SCHEMA_VERSION


def test_store_from_a_newer_vet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vet.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this vet"):
        Store(path)


def test_a_file_that_is_not_a_store_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not sqlite at all " * 100)
    with pytest.raises(StoreError, match="not a vet run store"):
        Store(path)


def test_transitions_are_checked_and_persisted(tmp_path: Path) -> None:
    with Store(tmp_path / "vet.sqlite") as store:
        store.start_run("r1", "quick", "inv")
        store.register_host("r1", "node01")
        store.transition("r1", "node01", State.QUEUED)
        store.transition("r1", "node01", State.INVENTORY_CHECK, stage="inventory")
        with pytest.raises(IllegalTransition):
            store.transition("r1", "node01", State.QUEUED)
        store.transition("r1", "node01", State.FAILED, reason="inventory: lshw crashed",
                         stage="inventory")
    with Store(tmp_path / "vet.sqlite") as store:
        assert store.host_state("r1", "node01") is State.FAILED
        rows = store.transitions("r1", "node01")
        assert [(r["from_state"], r["to_state"]) for r in rows] == [
            ("Registered", "Queued"), ("Queued", "InventoryCheck"), ("InventoryCheck", "Failed")]
        assert rows[-1]["reason"] == "inventory: lshw crashed"


def test_results_measurements_diffs_and_records_round_trip(tmp_path: Path) -> None:
    with Store(tmp_path / "vet.sqlite") as store:
        store.start_run("r1", "quick", "inv")
        store.record_test("r1", "n1", "cpu", "suites/test_cpu.py::test_stress[n1]", "passed",
                          1.0, 2.5)
        store.add_measurements("r1", "n1", "cpu", [Measurement("bogo_ops_per_s", 123.4, "ops/s")])
        store.add_spec_diffs("r1", "n1", [
            SpecDifference("cpu.threads", "4", "2", Severity.CRITICAL, "fewer"),
            SpecDifference("cpu.model", "X", "X", None, "matches")])
        store.add_record("r1", "n1", "inventory", "hardware", {"cpu": {"threads": 2}})
        assert store.test_results("r1", "n1")[0]["duration_s"] == 2.5
        assert store.measurements("r1", "n1")[0]["value"] == pytest.approx(123.4)
        diffs = store.spec_diffs("r1", "n1")
        assert [d["severity"] for d in diffs] == ["critical", None]
        assert '"threads": 2' in store.records("r1", "n1")[0]["json"]


def _writer(path: str, worker: int, count: int) -> None:
    store = Store(path)
    host = f"node{worker:02d}"
    store.register_host("r1", host)
    for i in range(count):
        store.add_event("r1", host, "harness", "tick", {"i": i})
        store.record_test("r1", host, "cpu", f"t{i}", "passed", 0.0, 0.01)
    store.close()


def test_concurrent_writer_processes_lose_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "vet.sqlite"
    with Store(path) as store:
        store.start_run("r1", "quick", "inv")
    workers, count = 6, 300
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    with Store(path) as store:
        events = store.query("SELECT host, COUNT(*) AS n FROM events GROUP BY host")
        assert {r["host"]: r["n"] for r in events} == {f"node{w:02d}": count
                                                       for w in range(workers)}
        assert len(store.test_results("r1")) == workers * count
        assert len(store.hosts("r1")) == workers


def test_a_note_with_keep_prefix_leaves_an_earlier_note_alone(tmp_path: Path) -> None:
    """The controller's interruption note never overwrites the one its worker made."""
    with Store(tmp_path / "vet.sqlite") as store:
        store.start_run("r1", "quick", "inv")
        store.register_host("r1", "node01")
        assert store.note_host("r1", "node01", "interrupted (worker)", keep_prefix="interrupted")
        assert not store.note_host("r1", "node01", "interrupted (controller)",
                                   keep_prefix="interrupted")
        assert store.hosts("r1")[0]["reason"] == "interrupted (worker)"
        assert store.note_host("r1", "node01", "interrupted again")  # no prefix: always set
        assert store.hosts("r1")[0]["reason"] == "interrupted again"
