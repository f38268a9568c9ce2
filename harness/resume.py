"""`--resume RUN_ID`: continue a run whose controller died, from what the store says.

Every transition is committed before anything shows it (harness.store), so the store
alone tells where each host stopped: the stages before the one it was in are done and
are not run again (their results, events, evidence and console log stay, appended to,
never truncated); the stage it was in runs again from its start; a host that failed,
is held or was released stays as it was, and a completed one is left alone.

A run may be resumed only when its controller is gone: its pid (recorded in the runs
table) no longer runs on this machine, or the run ended (interrupted, failed). A live
controller, or one on another machine (vet cannot see its processes), is refused.

Network-booted hosts are booted again for the resumed run (same run id, so the same
controller key and a run token the host will verify): after a controller died nobody
watched the host, its console output in the gap is lost, and a destructive stage may
have been cut anywhere, so only a fresh boot into the RAM-only live image is a known
state. It costs one boot (about a minute).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from harness.console.channel import Channel
from harness.errors import VetError
from harness.leases import process_start, when
from harness.states import STAGES, STATE_STAGES, State
from harness.store import Store

if TYPE_CHECKING:  # paramiko is loaded only where SSH is used
    from harness.console.ssh import SshChannel

#: States in which nothing more happens to a host in this run.
FINISHED: frozenset[State] = frozenset(
    {State.COMPLETED, State.FAILED, State.HOLDING, State.RELEASED})


class ResumeRefused(VetError):
    """The run cannot be resumed (unknown, or its controller still runs); says why."""


@dataclass(frozen=True)
class HostPlan:
    """What the resumed run does with one host."""

    name: str
    state: str  # the host's state when the controller stopped
    done: tuple[str, ...]  # stages finished before the stop: not run again
    rerun: str | None  # the stage it was in: runs again from its start
    finished: bool  # completed, failed, held or released: nothing runs

    def runs(self, stage: str) -> bool:
        """Whether the resumed run runs this stage's tests on this host."""
        return not self.finished and stage not in self.done

    def why_not(self, stage: str) -> str:
        if self.finished:
            return f"host {self.name} was {self.state} before the resume"
        return f"stage {stage} of host {self.name} finished before the resume"


@dataclass(frozen=True)
class ResumePlan:
    run_id: str
    profile: str
    inventory: str
    previous_status: str
    previous_pid: int | None
    hosts: dict[str, HostPlan]

    def runs(self, host: str, stage: str) -> bool:
        plan = self.hosts.get(host)
        return plan is None or plan.runs(stage)

    def active(self, names: Sequence[str]) -> list[str]:
        """The hosts that still have work (the ones the resumed run leases)."""
        return [n for n in names if n not in self.hosts or not self.hosts[n].finished]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ResumePlan:
        data: dict[str, Any] = json.loads(text)
        hosts = {name: HostPlan(**{**h, "done": tuple(h["done"])})
                 for name, h in data.pop("hosts").items()}
        return cls(hosts=hosts, **data)


def controller_alive(run: dict[str, Any]) -> bool | None:
    """Whether the run's controller process still runs: None when vet cannot tell (it
    ran on another machine, or the run predates recorded pids)."""
    pid = run.get("controller_pid")
    if not pid:
        return None
    if run.get("controller") and run["controller"] != platform.node():
        return None
    started = process_start(int(pid))
    return started != "" and started == (run.get("controller_pid_start") or started)


def host_plan(name: str, state: State) -> HostPlan:
    """Where a host stopped -> what runs: stages before its current one are done."""
    if state in FINISHED:
        return HostPlan(name, state.value, (), None, finished=True)
    if state is State.REPORTING:
        return HostPlan(name, state.value, STAGES, None, finished=False)
    stage = STATE_STAGES.get(state)
    if stage is None:  # Registered, Queued, PowerOn, Booting: no stage ran yet
        return HostPlan(name, state.value, (), None, finished=False)
    return HostPlan(name, state.value, STAGES[: STAGES.index(stage)], stage, finished=False)


def plan(store: Store, run_id: str, names: Sequence[str]) -> ResumePlan:
    """The plan to resume `run_id` on the selected hosts, or ResumeRefused saying why."""
    run = store.run(run_id)
    if run is None:
        known = [r["id"] for r in store.query(
            "SELECT id FROM runs ORDER BY started_at DESC LIMIT 3")]
        raise ResumeRefused(
            f"--resume {run_id}: no such run in the store {store.path}; recent runs: "
            f"{', '.join(known) or 'none'} (`vet status` lists them; pass the store the run "
            "used with --store)")
    if run["status"] == "running":
        alive = controller_alive(run)
        if alive or alive is None:
            who = (f"its controller (pid {run['controller_pid']} on {run['controller']}) "
                   "still runs" if alive else
                   f"vet cannot tell whether its controller on {run['controller'] or '?'} "
                   "still runs (another machine, or a vet that did not record it)")
            raise ResumeRefused(
                f"--resume {run_id}: the run is still running since "
                f"{when(run['started_at'])}: {who}; stop that process first (Ctrl-C, or kill "
                "it if it hangs), then resume")
    states = {h["name"]: State(h["state"]) for h in store.hosts(run_id)}
    hosts = {n: host_plan(n, states[n]) for n in names if n in states}
    return ResumePlan(run_id, run["profile"], run["inventory"], run["status"],
                      run.get("controller_pid"), hosts)


#: The command line of SshChannel's persistent shell, as /proc/PID/cmdline shows it.
_VET_SHELL = "bash --norc --noprofile "


def remember_shells(store: Store, run_id: str, host: str, channel: SshChannel) -> None:
    """Record the process group of each persistent shell the channel starts on the host.

    A controller killed with SIGKILL cannot stop what its shell runs: the connection
    drops, and a shell without a pty keeps its command running. The run store keeps the
    group so that a resumed run kills it (reap_shells). The channel reports each new
    shell before its first command (SshChannel.on_new_shell), so this costs no round
    trip: asking the shell (`echo $$`) before every test cost one on each, ~15-30 ms on
    an emulated lab guest. A shell already running is recorded now.
    """
    def record(pgid: int) -> None:
        store.add_event(run_id, host, channel.transport, "remote-shell", {"pgid": pgid})

    channel.on_new_shell = record
    if channel.shell_pgid:
        record(channel.shell_pgid)


def reap_shells(store: Store, run_id: str, host: str, channel: Channel) -> list[int]:
    """Kill the process groups of the run's earlier shells that still run on the host
    (only groups whose leader is still vet's shell: a pid may have been reused)."""
    own = int(channel.run("echo $$", 30).stdout.strip())
    rows = store.query("SELECT payload_json FROM events WHERE run_id = ? AND host = ? AND "
                       "kind = 'remote-shell' ORDER BY id", (run_id, host))
    groups = sorted({int(json.loads(r["payload_json"])["pgid"]) for r in rows} - {own})
    script = "; ".join(
        f"[ \"$(tr '\\0' ' ' < /proc/{g}/cmdline 2>/dev/null)\" = '{_VET_SHELL}' ] && "
        f"kill -s KILL -- -{g} && echo {g}" for g in groups if g > 1)
    if not script:
        return []
    out = channel.run(script + "; true", 30).stdout
    return [int(w) for w in out.split() if w.isdigit()]


__all__ = ["FINISHED", "HostPlan", "ResumePlan", "ResumeRefused", "controller_alive",
           "host_plan", "plan", "reap_shells", "remember_shells"]
