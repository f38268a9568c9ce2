"""The janitor on a tmp store and reports tree: expired holds released, old console logs
and artifacts deleted, held hosts' and live runs' files kept, store rows never deleted."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from harness import leases
from harness.janitor import DAY_S, Retention, sweep
from harness.states import State
from harness.store import Store

NOW = time.time()


def _file(path: Path, age_days: float, size: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    at = NOW - age_days * DAY_S
    os.utime(path, (at, at))
    return path


def _rows(store: Store) -> dict[str, int]:
    return {t: store.query(f"SELECT count(*) AS n FROM {t}")[0]["n"]
            for t in ("runs", "hosts", "transitions", "holds")}


def _setup(tmp_path: Path) -> tuple[Store, Path, dict[str, Path]]:
    store = Store(tmp_path / "vet.sqlite")
    reports = tmp_path / "reports"
    for run_id in ("old", "held", "live"):
        store.start_run(run_id, "quick", "inv")
    for run_id, host in (("old", "n1"), ("held", "n2"), ("held", "n3")):
        store.transition(run_id, host, State.QUEUED)
        store.transition(run_id, host, State.FAILED, "x")
    # n2 is held and its hold expired long ago; n3's hold still runs.
    for host, expires in (("n2", NOW - 60), ("n3", NOW + 3600)):
        store.transition("held", host, State.HOLDING)
        store.add_hold("held", host, stage="spec", reason="x", opened_at=NOW - 30 * DAY_S,
                       expires_at=expires, opened_by="bob@ctl")
    store.acquire_leases("live", ["n9"], leases.this_lease(), leases.is_stale)
    runs = reports / "runs"
    files = {
        "old console": _file(runs / "old" / "n1" / "console.log", 20),
        "old events": _file(runs / "old" / "n1" / "events.jsonl", 20),
        "old allure": _file(runs / "old" / "allure-results" / "a-result.json", 100),
        "new console": _file(runs / "new" / "n1" / "console.log", 1),
        "held console": _file(runs / "held" / "n3" / "console.log", 30),
        "expired console": _file(runs / "held" / "n2" / "console.log", 30),
        "live console": _file(runs / "live" / "n9" / "console.log", 30),
    }
    return store, reports, files


def test_dry_run_says_what_it_would_do_and_changes_nothing(tmp_path: Path) -> None:
    store, reports, files = _setup(tmp_path)
    released: list[dict[str, Any]] = []

    def release(hold: dict[str, Any]) -> str:
        released.append(hold)
        return "x"

    done = sweep(store, reports, Retention(14, 90), dry_run=True, release=release, now=NOW)
    assert released == [] and all(p.exists() for p in files.values())
    text = "\n".join(done.lines(dry_run=True))
    assert "would release n2" in text
    assert "would delete 1 console log(s) and 1 other artifact(s)" in text
    assert f"would delete {files['old console']}" in text
    assert str(files["held console"]) not in text and str(files["live console"]) not in text
    assert "kept runs/live: the run is still going" in text
    store.close()


def test_sweep_releases_expired_holds_and_deletes_old_files_only(tmp_path: Path) -> None:
    store, reports, files = _setup(tmp_path)
    before = _rows(store)
    released: list[str] = []

    def release(hold: dict[str, Any]) -> str:
        released.append(hold["host"])
        store.close_hold(hold["id"], "vet janitor (expired)")
        return "boot script -> local disk; powered off"

    done = sweep(store, reports, Retention(console_days=14, artifact_days=90), dry_run=False,
                 release=release, now=NOW)
    assert released == ["n2"]
    assert [h["host"] for h in store.open_holds()] == ["n3"]
    gone = {name for name, path in files.items() if not path.exists()}
    # The expired hold is released first, so its host's old console log goes too.
    assert gone == {"old console", "old allure", "expired console"}
    assert done.freed_bytes == 300
    assert not (reports / "runs" / "old" / "allure-results").exists(), "empty folder left"
    assert files["old events"].exists()
    assert _rows(store) == before, "the janitor deleted store rows"
    lines = done.lines(dry_run=False)
    assert any(line.startswith("released n2 (held since") and "powered off" in line
               for line in lines)
    store.close()


def test_a_failed_release_is_reported_and_the_rest_goes_on(tmp_path: Path) -> None:
    store, reports, files = _setup(tmp_path)

    def release(hold: dict[str, Any]) -> str:
        raise RuntimeError("BMC 10.0.0.9 did not answer")

    done = sweep(store, reports, Retention(14, 90), dry_run=False, release=release, now=NOW)
    assert done.failed == ["could not release n2: BMC 10.0.0.9 did not answer"]
    assert files["expired console"].exists(), "a still-held host's console log was deleted"
    assert not files["old console"].exists()
    store.close()


def test_zero_days_keeps_nothing_but_held_and_live(tmp_path: Path) -> None:
    store, reports, files = _setup(tmp_path)
    sweep(store, reports, Retention(0, 0), dry_run=False, release=lambda h: "ok", now=NOW)
    left = {name for name, path in files.items() if path.exists()}
    assert left == {"held console", "expired console", "live console"}
    store.close()


def test_no_runs_folder_is_fine(tmp_path: Path) -> None:
    with Store(tmp_path / "vet.sqlite") as store:
        done = sweep(store, tmp_path / "nothing", Retention(), dry_run=False,
                     release=lambda h: "ok")
    assert done.deleted == [] and done.lines(False)[-1].startswith("deleted 0 console log(s)")
