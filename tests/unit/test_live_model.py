"""The live view's model: hosts from a real store and event files, refreshed incrementally
(event files by offset, the store only when another connection wrote to it), and the
inotify wake-up that tells a follower to look again."""

from __future__ import annotations

import json
from pathlib import Path

from harness.event_tail import EventTail, FileChanges, raw_field
from harness.events import EventLog
from harness.live_model import HostView, RunView, StoreChanges, not_a_line, verdict
from harness.states import State
from harness.store import Store
from tests.fixtures.live_run import RUN_ID, LiveRun, make_live_run


def _view(run: LiveRun, store: Store) -> RunView:
    view = RunView(store, RUN_ID, run.run_dir)
    view.refresh()
    return view


def test_table_model_from_store_and_events(tmp_path: Path) -> None:
    run = make_live_run(tmp_path)
    with Store(run.store_path) as store:
        view = _view(run, store)
        node01, node02, node03 = (view.hosts[h] for h in ("node01", "node02", "node03"))
        at = node01.progress["at"] if node01.progress else 0.0

        assert (node01.state, node01.stage) == ("CPUStress", "cpu")
        assert node01.progress_text(at + 10) == "42% 2 workers (1m10s, ~1m13s left)"
        assert node01.last_event_text() == "line: [  12.5] EDAC MC0: 1 CE"
        assert node01.verdict == "ok so far (1 passed)"
        assert node01.elapsed_s(at) is not None

        assert (node02.state, node02.reason) == ("Failed", "smart: disk S1 reallocated sectors")
        assert node02.verdict == "FAILED smart" and node02.progress_text(at) == ""
        assert node02.finished_at is not None  # its clock stopped
        assert (node03.state, node03.verdict, node03.elapsed_s(at)) == ("Registered", "-", None)
        assert not view.finished
        view.close()


def test_refresh_reads_only_what_was_appended(tmp_path: Path) -> None:
    run = make_live_run(tmp_path)
    path = run.run_dir / "node01" / "events.jsonl"
    with Store(run.store_path) as store:
        view = _view(run, store)
        assert view._tails["node01"].offset == path.stat().st_size
        log = run.events("node01")
        log.emit("harness", "progress", stage="cpu", percent=90.0, figure="almost")
        log.close()
        view.refresh()
        assert view.hosts["node01"].progress_text(0)[:10] == "90% almost"
        assert view._tails["node01"].offset == path.stat().st_size
        view.close()


def test_store_is_reread_only_after_another_connection_wrote(tmp_path: Path) -> None:
    run = make_live_run(tmp_path)
    with Store(run.store_path) as reader, Store(run.store_path) as writer:
        changes = StoreChanges(reader)
        assert changes.changed()  # the first look
        assert not changes.changed()
        writer.transition(RUN_ID, "node01", State.REPORTING, "all stages passed")
        assert changes.changed()
        view = _view(run, reader)
        writer.transition(RUN_ID, "node01", State.COMPLETED, "vetted")
        writer.record_test(RUN_ID, "node01", "cpu", "t::cpu[node01]", "passed", 2.0, 5.0)
        writer.finish_run(RUN_ID, "failed")
        view.refresh()
        assert view.hosts["node01"].state == "Completed"
        assert view.hosts["node01"].verdict == "PASSED (2 stages)"
        assert view.finished
        view.close()


def test_json_document(tmp_path: Path) -> None:
    run = make_live_run(tmp_path)
    with Store(run.store_path) as store:
        view = _view(run, store)
        document = json.loads(json.dumps(view.to_json(now=2e9)))
        view.close()
    assert document["run"] | {"started_at": None} == {
        "id": RUN_ID, "status": "running", "profile": "quick", "inventory": "inventory/test",
        "started_at": None, "ended_at": None, "controller": "", "finished": False}
    hosts = {h["name"]: h for h in document["hosts"]}
    assert list(hosts) == ["node01", "node02", "node03"]
    assert hosts["node01"] | {"started_at": 0, "elapsed_s": 0, "last_event_at": 0} == {
        "name": "node01", "state": "CPUStress", "stage": "cpu", "reason": "stage cpu",
        "percent": 42.0, "figure": "2 workers", "progress": hosts["node01"]["progress"],
        "started_at": 0, "elapsed_s": 0, "last_event": "line: [  12.5] EDAC MC0: 1 CE",
        "last_event_at": 0, "verdict": "ok so far (1 passed)", "stages": {"inventory": "passed"}}
    assert hosts["node01"]["progress"].startswith("42% 2 workers (")
    assert hosts["node02"]["stages"] == {"smart": "failed"}


def test_progress_of_an_earlier_stage_is_not_shown() -> None:
    view = HostView("h")
    view.apply({"kind": "state", "to": "SMART", "stage": "smart", "at": 10.0})
    view.apply({"kind": "progress", "stage": "smart", "percent": 50.0, "at": 11.0})
    assert view.progress_text(11.0).startswith("50%")
    view.apply({"kind": "stage-start", "stage": "cpu", "at": 12.0})
    assert view.progress_text(12.0) == ""
    assert view.started_at == 10.0


def test_verdict_so_far() -> None:
    passed = {"outcome": "passed"}
    assert verdict({}, "Queued") == "-"
    assert verdict({"spec": passed}, "SMART") == "ok so far (1 passed)"
    assert verdict({"spec": passed, "smart": {"outcome": "error"}}, "Failed") == "FAILED smart"
    assert verdict({"spec": passed}, "Completed") == "PASSED (1 stage)"


def test_tail_skips_unwanted_lines_but_keeps_the_latest(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, "r", "h")
    log.emit("console", "line", text='"kind": "state" in a console line')
    log.emit("harness", "state", to="SMART", note={"kind": "line"})
    log.emit("console", "line", text="latest line")
    log.emit("harness", "progress", percent=5.0)
    log.close()
    tail = EventTail(path)
    events = tail.read(want=not_a_line, keep_latest=True)
    assert [(e["kind"], e.get("text")) for e in events] == [
        ("state", None), ("line", "latest line"), ("progress", None)]
    assert raw_field(path.read_bytes().splitlines()[0], "kind") == "line"
    tail.close()


def test_tail_keeps_a_torn_line_and_follows_a_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.read() == []  # no file yet
    path.write_bytes(b'{"kind": "a"}\n{"kind": "b"')
    assert [e["kind"] for e in tail.read()] == ["a"]
    with path.open("ab") as f:
        f.write(b'}\nnot json\n{"kind": "c"}\n')
    assert [e["kind"] for e in tail.read()] == ["b", "c"]
    assert tail.read() == []
    path.unlink()
    path.write_bytes(b'{"kind": "new"}\n')  # a new file at the same path
    assert [e["kind"] for e in tail.read()] == ["new"]
    tail.close()


def test_file_changes_wake_on_writes_in_new_subfolders_not_on_reads(tmp_path: Path) -> None:
    with FileChanges() as changes:
        assert not changes.watch(tmp_path / "run")  # not there yet
        (tmp_path / "run").mkdir()
        assert changes.watch(tmp_path / "run", recursive=True)
        changes.wait(0)  # forget the watch's own setup
        host = tmp_path / "run" / "node01"
        host.mkdir()
        assert changes.wait(10)
        (host / "events.jsonl").write_text('{"kind": "a"}\n')
        assert changes.wait(10)
        for _ in range(20):  # let the last write's events (modify, close) drain
            if not changes.wait(0.5):
                break
        assert (host / "events.jsonl").read_text()
        assert not changes.wait(0.5)  # reading is not a change
