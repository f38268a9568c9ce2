"""harness.resume: what a resumed run does with each host, from a real run store."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from harness.leases import process_start
from harness.resume import ResumePlan, ResumeRefused, controller_alive, host_plan, plan
from harness.states import STAGES, State
from harness.store import Store


@pytest.mark.parametrize(("state", "done", "rerun", "finished"), [
    (State.REGISTERED, (), None, False),
    (State.QUEUED, (), None, False),
    (State.BOOTING, (), None, False),
    (State.INVENTORY_CHECK, (), "inventory", False),
    (State.MEMORY, ("inventory", "spec", "smart", "cpu"), "memory", False),
    (State.REPORTING, STAGES, None, False),
    (State.COMPLETED, (), None, True),
    (State.FAILED, (), None, True),
    (State.HOLDING, (), None, True),
    (State.RELEASED, (), None, True),
])
def test_a_host_resumes_at_the_stage_it_was_in(state: State, done: tuple[str, ...],
                                               rerun: str | None, finished: bool) -> None:
    got = host_plan("n1", state)
    assert (got.done, got.rerun, got.finished) == (done, rerun, finished)
    if rerun is not None:
        assert got.runs(rerun) and not any(got.runs(s) for s in done)
        assert "finished before the resume" in got.why_not(done[0] if done else rerun)
    if finished:
        assert not any(got.runs(s) for s in STAGES)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=60)
    return int(proc.stdout)


def _store(tmp_path: Path, pid: int, status: str = "running") -> Store:
    store = Store(tmp_path / "vet.sqlite")
    store.start_run("r1", "quick", "inv", controller=platform.node())
    store.set_controller("r1", pid, process_start(pid))
    if status != "running":
        store.finish_run("r1", status)
    for name, moves in {"a": [State.QUEUED, State.INVENTORY_CHECK, State.CPU_STRESS],
                        "b": [State.QUEUED, State.INVENTORY_CHECK, State.FAILED]}.items():
        for target in moves:
            store.transition("r1", name, target)
    return store


def test_plan_of_a_run_whose_controller_died(tmp_path: Path) -> None:
    dead = _dead_pid()
    with _store(tmp_path, dead) as store:
        got = plan(store, "r1", ["a", "b", "new"])
    assert got.previous_pid == dead and got.previous_status == "running"
    assert got.hosts["a"].rerun == "cpu" and got.hosts["b"].finished
    assert "new" not in got.hosts and got.runs("new", "cpu")  # not in the run: all of it
    assert got.active(["a", "b", "new"]) == ["a", "new"]
    assert ResumePlan.from_json(got.to_json()) == got


def test_a_live_controller_is_refused_naming_its_pid(tmp_path: Path) -> None:
    with _store(tmp_path, os.getpid()) as store:
        assert controller_alive(store.run("r1") or {}) is True
        with pytest.raises(ResumeRefused, match=rf"pid {os.getpid()} on .* still runs"):
            plan(store, "r1", ["a"])
        store.finish_run("r1", "interrupted")  # an ended run is resumable at once
        assert plan(store, "r1", ["a"]).previous_status == "interrupted"


def test_a_reused_pid_is_not_the_controller(tmp_path: Path) -> None:
    with _store(tmp_path, os.getpid()) as store:
        store.set_controller("r1", os.getpid(), "1")  # same pid, another start time
        assert controller_alive(store.run("r1") or {}) is False
        assert plan(store, "r1", ["a"]).hosts["a"].rerun == "cpu"


def test_a_controller_on_another_machine_cannot_be_judged(tmp_path: Path) -> None:
    with _store(tmp_path, _dead_pid()) as store:
        run = {**(store.run("r1") or {}), "controller": "elsewhere"}
        assert controller_alive(run) is None
        with store._write() as db:
            db.execute("UPDATE runs SET controller = 'elsewhere'")
        with pytest.raises(ResumeRefused, match="cannot tell whether its controller on "
                                                "elsewhere still runs"):
            plan(store, "r1", ["a"])


def test_an_unknown_run_names_recent_ones(tmp_path: Path) -> None:
    with _store(tmp_path, _dead_pid()) as store, \
            pytest.raises(ResumeRefused, match=r"--resume r9: no such run .* recent runs: r1"):
        plan(store, "r9", ["a"])
