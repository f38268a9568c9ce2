"""The pytest plugin that turns suites/ into a vetting pipeline.

It adds the vet options, parametrises stage tests over the inventory's hosts, runs
each host's stages in pipeline order (on one xdist worker per host), skips a host's
later stages once one fails, persists every state change before pytest reports it,
and labels Allure results by server and stage.
"""

from __future__ import annotations

import base64
import functools
import os
import pickle
import platform
import re
import secrets
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import allure
import pytest

import harness
from harness.console.boot import BootTracker, Finding
from harness.console.channel import Channel
from harness.console.local import LocalChannel
from harness.console.serial import SerialChannel
from harness.console.watch import ConsoleWatch, Mark
from harness.errors import ConsoleDeath, VetError
from harness.events import EventLog
from harness.hold import hold_lines, open_hold
from harness.host import (
    HostUnderTest,
    RunContext,
    host_dir,
    log_console,
    open_events,
)
from harness.interrupt import Interrupts
from harness.inventory_process import load_inventory_apart
from harness.leases import HostBusy, operator, process_start
from harness.leases import acquire as acquire_leases
from harness.leases import release as release_leases
from harness.models import Host, Measurement
from harness.netboot import CONSOLE_RECONNECT_S, BootedHost, netboot, release
from harness.netperf import Iperf3Server
from harness.notify import Notifier, summary_lines
from harness.overrides import OVERRIDES, apply_overrides, check_overrides
from harness.plot_server import PlotService
from harness.plot_server import start as start_plot_server
from harness.plot_server import stop as stop_plot_server
from harness.plots import PLOTTING_STAGES
from harness.profiles import DEFAULT_PROFILE, PROFILES, effective_params, override_problems
from harness.report_allure import environment, write_run_metadata
from harness.resume import ResumePlan, ResumeRefused, reap_shells, remember_shells
from harness.resume import plan as resume_plan
from harness.scheduling import HostScheduling
from harness.states import STAGE_STATES, STAGES, STATE_STAGES, State, stage_index
from harness.store import Store
from harness.summary import render_summary

if TYPE_CHECKING:
    from harness.console.ssh import SshChannel

DEFAULT_INVENTORY = "inventory/local"

#: The SMART comparison after the stress stages runs as a teardown hook of its own.
pytest_plugins = ["harness.smart_snapshot", "harness.live_progress"]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class VetRun:
    """Everything one pytest process knows about the run it is part of."""

    def __init__(self, config: pytest.Config, hosts: list[Host], run_id: str) -> None:
        self.config = config
        self.hosts = {h.name: h for h in hosts}
        self.run_id = run_id
        self.profile: str = config.getoption("vet_profile")
        self.inventory: str = config.getoption("vet_inventory") or DEFAULT_INVENTORY
        self.reports_dir = Path(config.getoption("vet_reports_dir"))
        self.store_path = Path(config.getoption("vet_store") or self.reports_dir / "vet.sqlite")
        self.run_dir = self.reports_dir / "runs" / run_id
        self.is_worker = hasattr(config, "workerinput")
        self._store: Store | None = None
        self.failed: dict[str, tuple[str, str]] = {}
        self.current_stage: dict[str, str] = {}
        self.remaining: Counter[str] = Counter()
        #: Each host's stages in this run (those selected), from collection.
        self.stages_of: defaultdict[str, set[str]] = defaultdict(set)
        self.open_hosts: dict[str, HostUnderTest] = {}
        #: Hosts whose fixture has closed: their last moves (Reporting, Completed) come after.
        self.closed_hosts: set[str] = set()
        #: Sends StageFailed/SpecMismatch (move), RunCompleted (session end) and, through
        #: harness.notify.notify_event, what other parts report (HoldingOpened).
        self.notifier = Notifier.for_hosts(hosts, run_id).activate()
        #: `vet retry`: stages run on held hosts (no boot), with the operator's overrides.
        self.attach_held: bool = bool(config.getoption("vet_attach_held"))
        self.overrides: list[str] = list(config.getoption("vet_overrides") or ())
        self.leased = False
        #: --resume: what each host still has to do (harness.resume); None for a new run.
        self.resume: ResumePlan | None = None
        #: SIGINT/SIGTERM: an orderly stop (harness.interrupt); the controller passes
        #: them on to its xdist workers.
        self.worker_pids: list[int] = []
        self.interrupts = Interrupts(lambda: self.worker_pids)
        #: The run's plot server (harness.plot_server): the controller starts it when
        #: plotting stages may run; workers get its address.
        self.plots: PlotService | None = None
        self.plot_server: subprocess.Popen[bytes] | None = None

    def resuming(self, resume: ResumePlan) -> None:
        """Continue `resume`'s run: a host's interrupted stage is entered already."""
        self.resume = resume
        for name, plan in resume.hosts.items():
            if plan.rerun is not None:
                self.current_stage[name] = plan.rerun

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.store_path)
        return self._store

    def params(self, host: Host) -> dict[str, Any]:
        return apply_overrides(host, effective_params(self.profile, host), self.overrides)

    def close(self) -> None:
        self.notifier.deactivate()
        if self._store is not None:
            self._store.close()


RUN_KEY = pytest.StashKey[VetRun]()
CONSOLE_MARK = pytest.StashKey[Mark]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vet", "vet: bare-metal vetting")
    group.addoption("--inventory", dest="vet_inventory", default=None,
                    help=f"Ansible inventory (file or directory); default {DEFAULT_INVENTORY}")
    group.addoption("--hosts", dest="vet_hosts", default=None,
                    help="host pattern as for ansible --limit, e.g. 'node0*' or 'rack1:!node03'")
    group.addoption("--profile", dest="vet_profile", default=DEFAULT_PROFILE,
                    help=f"vetting profile: {', '.join(PROFILES)} (default {DEFAULT_PROFILE})")
    group.addoption("--run-id", dest="vet_run_id", default=None,
                    help="id of this run (default: generated from the time)")
    group.addoption("--store", dest="vet_store", default=None,
                    help="SQLite run store (default REPORTS/vet.sqlite)")
    group.addoption("--reports-dir", dest="vet_reports_dir", default="reports",
                    help="where logs, evidence and results go (default ./reports)")
    group.addoption("--vault-password-file", dest="vet_vault_password_file", default=None,
                    help="file holding the Ansible vault password for the inventory")
    group.addoption("--attach-held", dest="vet_attach_held", action="store_true",
                    help="run on held hosts as they are (no boot), with their hold keys "
                         "(what `vet retry` does)")
    group.addoption("--override", dest="vet_overrides", action="append", default=[],
                    metavar="NAME", help="an operator override for this run, recorded with "
                    f"the operator's name: {', '.join(OVERRIDES)}")
    group.addoption("--resume", dest="vet_resume", default=None, metavar="RUN_ID",
                    help="continue a run whose controller died or was interrupted, after "
                         "each host's last completed stage (docs/RELIABILITY.md)")


def _is_vet_run(config: pytest.Config) -> bool:
    """A vet run names an inventory or collects from suites/; plain harness tests do not."""
    if config.getoption("vet_inventory"):
        return True
    suites = (config.rootpath / "suites").resolve()
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == suites or suites in path.parents:
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stage: a vetting stage test (pytest -m stage runs all)")
    for stage in STAGES:
        config.addinivalue_line("markers", f"{stage}: the {stage} vetting stage")
    if not _is_vet_run(config):
        return
    profile = config.getoption("vet_profile")
    if profile not in PROFILES:
        raise pytest.UsageError(
            f"--profile {profile!r} is unknown; choose one of {', '.join(PROFILES)}"
        )
    inventory = config.getoption("vet_inventory") or DEFAULT_INVENTORY
    workerinput = getattr(config, "workerinput", None)
    try:
        if workerinput is not None and workerinput.get("vet_hosts"):
            hosts = hosts_from_controller(workerinput["vet_hosts"])
        else:
            hosts = load_inventory_apart(  # Ansible's loader stays out of this process
                inventory, config.getoption("vet_hosts"),
                config.getoption("vet_vault_password_file"))
    except VetError as exc:
        raise pytest.UsageError(str(exc)) from None
    problems = [p for h in hosts for p in override_problems(h)]
    if problems:
        raise pytest.UsageError(f"{inventory}: " + f"\n{inventory}: ".join(problems))
    resume = config.getoption("vet_resume")
    if workerinput is not None:
        run_id = workerinput["vet_run_id"]
    elif resume and config.getoption("vet_run_id") not in (None, resume):
        raise pytest.UsageError(f"--resume {resume} continues run {resume}: leave out "
                                f"--run-id {config.getoption('vet_run_id')}")
    else:
        run_id = resume or config.getoption("vet_run_id") or new_run_id()
    run = VetRun(config, hosts, run_id)
    config.stash[RUN_KEY] = run
    run.interrupts.install()
    if workerinput is not None and workerinput.get("vet_resume"):
        run.resuming(ResumePlan.from_json(workerinput["vet_resume"]))
    if workerinput is not None and workerinput.get("vet_plots"):
        run.plots = PlotService.from_json(workerinput["vet_plots"])
    if workerinput is None:
        if resume:
            try:
                run.resuming(resume_plan(run.store, run_id, list(run.hosts)))
            except ResumeRefused as exc:
                raise pytest.UsageError(str(exc)) from None
        _take_hosts(run)
    if not getattr(config.option, "allure_report_dir", None):
        # One results folder per run: `vet report` builds a run's report from it, and
        # Allure's history file carries the trend across runs.
        config.option.allure_report_dir = str(run.run_dir / "allure-results")


def _take_hosts(run: VetRun) -> None:
    """Lease the run's hosts (refusing held and busy ones) before anything touches them."""
    try:
        check_overrides(run.overrides)
        if run.attach_held:
            idle = [n for n in run.hosts if not run.store.open_holds(n)]
            if idle:
                raise VetError(f"--attach-held: {', '.join(idle)} not held, so there is no "
                               "booted host to attach to; `vet holds` lists the held hosts "
                               "(select them with --hosts)")
        names = list(run.hosts) if run.resume is None else run.resume.active(list(run.hosts))
        acquire_leases(run.store, run.run_id, names, attach_held=run.attach_held)
    except (HostBusy, VetError) as exc:
        raise pytest.UsageError(str(exc)) from None
    run.leased = True


def move(run: VetRun, name: str, state: State, reason: str, stage: str | None = None,
         events: EventLog | None = None) -> None:
    """Persist a host's transition, then show it in the host's event stream."""
    previous = run.store.transition(run.run_id, name, state, reason, stage)
    vetted = run.open_hosts.get(name)
    events = events or (vetted.events if vetted is not None else None)
    fields = {"stage": stage, "reason": reason, "from": previous.value, "to": state.value}
    if events is not None:
        events.emit("harness", "state", **fields)
    elif name in run.closed_hosts:
        # After the host fixture closed its log (the moves that end a host's run): append
        # to it once more, so the event stream ends with the host's final state.
        ctx = RunContext(run.run_id, run.profile, run.store, run.run_dir)
        late = open_events(ctx, name)
        try:
            late.emit("harness", "state", **fields)
        finally:
            late.close()
    if state is State.FAILED:  # every failure passes here, boot failures included
        run.notifier.host_failed(name, stage, reason)


def hosts_for_workers(hosts: list[Host]) -> str:
    """The controller's parsed hosts, for its xdist workers (see hosts_from_controller)."""
    return base64.b64encode(pickle.dumps(hosts)).decode("ascii")


def hosts_from_controller(wire: str) -> list[Host]:
    """The hosts the controller loaded, instead of loading the inventory again.

    Each worker loading it itself cost ~0.7 CPU-s and ~10 MB (Ansible's loader) per
    worker (benchmarks/bench_fleet.py). Pickle, not JSON: Host is a tree of typed records
    that pickle rebuilds exactly; it only travels from the controller to the workers it
    started, over execnet's pipe (never argv, logs or files).
    """
    hosts: list[Host] = pickle.loads(base64.b64decode(wire))
    return hosts


def _run(config: pytest.Config) -> VetRun | None:
    return config.stash.get(RUN_KEY, None)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    run = _run(node.config)
    if run is not None:
        node.workerinput["vet_run_id"] = run.run_id
        node.workerinput["vet_hosts"] = hosts_for_workers(list(run.hosts.values()))
        node.workerinput["vet_resume"] = run.resume.to_json() if run.resume else None
        node.workerinput["vet_plots"] = run.plots.to_json() if run.plots else None


@pytest.hookimpl(optionalhook=True)
def pytest_testnodeready(node: Any) -> None:
    """Remember each worker's pid: a stop signal is passed on to it (harness.interrupt).

    xdist does not say it; execnet's gateway info does (cached from the gateway's start).
    """
    run = _run(node.config)
    try:
        pid = node.gateway._rinfo().pid
    except Exception:  # an execnet without it: the workers stop at xdist's shutdown
        return
    if run is not None and isinstance(pid, int):
        run.worker_pids.append(pid)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> HostScheduling | None:
    run = _run(config)
    return HostScheduling(config, log, run.hosts) if run is not None else None


def _may_plot(config: pytest.Config) -> bool:
    """Whether the selected stages may draw plots: no -m, or one that names `stage` or a
    plotting stage (`not cpu` too: this only saves a server where none can be needed)."""
    words = set(re.findall(r"\w+", config.getoption("markexpr", "") or ""))
    return not words or "stage" in words or bool(words & PLOTTING_STAGES)


def pytest_sessionstart(session: pytest.Session) -> None:
    run = _run(session.config)
    if run is None or run.is_worker:
        return
    if _may_plot(session.config):  # before xdist starts its workers: they get its address
        try:
            run.plots, run.plot_server = start_plot_server()
        except VetError as exc:  # plots are drawn in each process instead
            print(f"vet: {exc}", file=sys.stderr)
    run.store.start_run(
        run.run_id, run.profile, run.inventory,
        params={"profile": run.profile,
                "hosts": {name: run.params(h) for name, h in run.hosts.items()}},
        controller=platform.node(), vet_version=harness.__version__,
    )
    if run.resume is not None:
        _resume_run(run, run.resume)
    else:
        run.store.set_controller(run.run_id, os.getpid(), process_start(os.getpid()))
    for name in run.hosts:
        run.store.register_host(run.run_id, name)
        held = run.store.open_holds(name) if run.attach_held else []
        for override in run.overrides:
            run.store.record_override(run.run_id, name, OVERRIDES[override].stage, override,
                                      operator(), held[-1]["id"] if held else None)
    results = getattr(session.config.option, "allure_report_dir", None)
    if results:
        write_run_metadata(Path(results), environment(
            run.run_id, run.profile, run.inventory, run.hosts,
            netbooted=any(is_netbooted(h) for h in run.hosts.values()),
            local=any(h.connection.kind == "local" for h in run.hosts.values())))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "host" not in metafunc.fixturenames:
        return
    run = _run(metafunc.config)
    names = list(run.hosts) if run is not None else []
    metafunc.parametrize("host", names, ids=names, indirect=True, scope="session")


def item_host(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    value = callspec.params.get("host")
    return value if isinstance(value, str) else None


def item_stage(item: pytest.Item) -> str | None:
    for stage in STAGES:
        if item.get_closest_marker(stage) is not None:
            return stage
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    run = _run(config)
    if run is None:
        return
    problems = [
        f"{item.nodeid}: a test taking `host` needs the `stage` marker and one stage marker "
        f"({', '.join(STAGES)}), e.g. pytestmark = [pytest.mark.stage, pytest.mark.cpu]"
        for item in items
        if item_host(item) is not None
        and (item_stage(item) is None or item.get_closest_marker("stage") is None)
    ]
    if problems:
        raise pytest.UsageError("\n".join(problems))
    host_order = {name: i for i, name in enumerate(run.hosts)}
    position = {id(item): i for i, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[int, int, int, int]:
        host = item_host(item)
        if host is None:
            return (0, 0, 0, position[id(item)])
        return (1, host_order.get(host, 0), stage_index(item_stage(item) or ""),
                position[id(item)])

    items.sort(key=key)
    if run.resume is not None:
        plan = run.resume
        done = [i for i in items
                if item_host(i) is not None and not plan.runs(item_host(i) or "",
                                                             item_stage(i) or "")]
        if done:
            items[:] = [i for i in items if i not in done]
            config.hook.pytest_deselected(items=done)
    run.remaining = Counter(h for h in map(item_host, items) if h is not None)
    for item in items:
        name, stage = item_host(item), item_stage(item)
        if name is not None and stage is not None:
            run.stages_of[name].add(stage)


@pytest.fixture(scope="session")
def host(request: pytest.FixtureRequest) -> Iterator[HostUnderTest]:
    """The host under test, reachable through its channel (parametrised per host).

    A host with vet_pxe is network-booted into the live image for this run first (see
    harness.netboot); one without is expected to be up already. Teardown: a host that
    passed is released (boot script back to its local disk, powered off); a host that
    failed stays up, untouched, for the operator.
    """
    run = _run(request.config)
    assert run is not None, "the host fixture needs a vet run (--inventory)"
    spec = run.hosts[request.param]
    ctx = RunContext(run.run_id, run.profile, run.store, run.run_dir)
    events = open_events(ctx, spec.name)
    if spec.mqtt is not None:  # vet_mqtt: live events to a broker (paho imported only then)
        from harness.mqtt import finish_host, publisher_for

        mqtt = publisher_for(spec.mqtt, events)
        if mqtt is not None:
            request.config.add_cleanup(  # after the host's last state, even one not emitted
                functools.partial(finish_host, mqtt, run.store_path, run.run_id, spec.name))
    for done in run.store.transitions(run.run_id, spec.name):  # made before the host opened
        events.emit("harness", "state", stage=done["stage"], reason=done["reason"],
                    at=done["at"], **{"from": done["from_state"], "to": done["to_state"]})
    booted = None
    held = run.store.open_holds(spec.name) if run.attach_held else []
    if held:
        vetted = _attach_held(spec, held[-1], ctx, run.params(spec), events)
    elif is_netbooted(spec):
        booted = _boot(run, spec, ctx, events)
        vetted = HostUnderTest(spec, booted.channel, ctx, run.params(spec), events=events)
        vetted.facts["netboot"] = {"mac": booted.announce.mac or spec.macs[0],
                                   "ip": booted.announce.ip,
                                   "hostkey": booted.announce.hostkey_fingerprint}
        if booted.console is not None and booted.watch is not None:
            vetted.attach_console(booted.console, booted.watch, subscribed=True)
    else:
        vetted = HostUnderTest(spec, channel_for(spec), ctx, run.params(spec), events=events)
        if spec.console:
            vetted.attach_console(*open_console(spec, vetted.host_dir / "console.log"))
    if run.resume is not None and booted is None and not held and _is_ssh(vetted.channel):
        # What the dead controller's shell still runs there (harness.resume).
        events.emit("harness", "resume-reaped", process_groups=reap_shells(
            run.store, run.run_id, spec.name, vetted.channel))
    if _is_ssh(vetted.channel):  # each shell it starts, for a later resume to reap
        remember_shells(run.store, run.run_id, spec.name, vetted.channel)
    if run.plots is not None:  # drawn by the run's plot server, not in this process
        vetted.renderer = run.plots.render
    run.open_hosts[spec.name] = vetted
    yield vetted
    run.open_hosts.pop(spec.name, None)
    run.closed_hosts.add(spec.name)
    try:
        if held:
            vetted.channel.close()
            events.emit("harness", "hold-kept", hold_id=held[-1]["id"],
                        reason=f"still held from run {held[-1]['run_id']}: `vet release "
                               f"{spec.name}` when done")
        elif booted is not None:
            if spec.name in run.failed:
                stage, why = run.failed[spec.name]
                open_hold(run.store, run.run_id, spec, stage=stage, reason=why,
                          address=booted.announce.ip, host_key=booted.announce.hostkey_fingerprint,
                          channel=vetted.channel, console=booted.console, events=events)
                vetted.channel.close()
            else:
                vetted.channel.close()
                release(spec, booted, events)
    finally:
        vetted.close()


def _attach_held(spec: Host, hold: dict[str, Any], ctx: RunContext, params: dict[str, Any],
                 events: EventLog) -> HostUnderTest:
    """A held host as it is (no boot): SSH with the hold key, its host key pinned."""
    from harness.console.ssh import SshChannel  # paramiko on use (harness.console)

    channel = SshChannel(spec.name, hold["ip"], port=hold["ssh_port"] or 22,
                         user=hold["ssh_user"] or "root", key_filename=hold["key_path"],
                         host_key_fingerprint=hold["host_key"],
                         dead_after=spec.connection.dead_after_s)
    events.emit("harness", "attached", hold_id=hold["id"], held_from=hold["run_id"],
                ip=hold["ip"])
    vetted = HostUnderTest(spec, channel, ctx, params, events=events)
    vetted.facts["netboot"] = {"mac": spec.macs[0] if spec.macs else None, "ip": hold["ip"],
                               "hostkey": hold["host_key"], "held_from": hold["run_id"]}
    if spec.console:
        vetted.attach_console(*open_console(spec, vetted.host_dir / "console.log"))
    return vetted


def is_netbooted(spec: Host) -> bool:
    """vet boots hosts that have a PXE server and are not the controller itself."""
    return spec.pxe is not None and spec.connection.kind != "local"


def _boot(run: VetRun, spec: Host, ctx: RunContext, events: EventLog) -> BootedHost:
    """Network-boot the host, moving it through PowerOn and Booting as it goes."""
    state = run.store.host_state(run.run_id, spec.name)
    again = run.resume is not None and state not in (State.REGISTERED, State.QUEUED)
    if state is State.REGISTERED:
        move(run, spec.name, State.QUEUED, "picked up by a worker", events=events)
    if again:  # harness.resume: booted afresh, its state stays where the stop left it
        events.emit("harness", "resume-boot", state=str(state),
                    reason="the run is resumed: booting the host again into a known state")
    else:
        move(run, spec.name, State.POWER_ON, "provisioning and powering on", events=events)
    hdir = host_dir(ctx, spec.name)

    def console_opened(console: SerialChannel, watch: ConsoleWatch) -> None:
        log_console(console, events)  # netboot() feeds the watch itself

        def finding(f: Finding) -> None:
            events.emit("console", "finding", finding=f.kind, severity=f.severity,
                        message=f.message)

        watch.on_finding(finding)

    if not again or state is State.POWER_ON:  # PowerOn leads only to Booting
        move(run, spec.name, State.BOOTING, "powered on; following the console", events=events)
    booted = netboot(spec, run_id=run.run_id, console_log=hdir / "console.log", events=events,
                     on_console_open=console_opened)
    measurements = [Measurement(f"boot_{e.step.label.lower().replace('-', '_')}_s",
                                round(e.at - booted.powered_on_at, 3), "s")
                    for e in booted.timeline]
    run.store.add_measurements(run.run_id, spec.name, "boot", measurements)
    return booted


def channel_for(spec: Host) -> Channel:
    """The channel that reaches a booted host's shell, by its inventory connection."""
    conn = spec.connection
    if conn.kind == "local":
        return LocalChannel(spec.name)
    from harness.console.ssh import SshChannel  # paramiko on use (harness.console)

    return SshChannel(
        spec.name, conn.address or spec.name, port=conn.port or 22, user=conn.user or "root",
        key_filename=conn.key_file, host_key_fingerprint=conn.host_key,
        dead_after=conn.dead_after_s,
    )


def _is_ssh(channel: Channel) -> TypeGuard[SshChannel]:
    """isinstance(channel, SshChannel) without importing paramiko into a process that has
    no SSH channel (an SshChannel exists only once its module is imported)."""
    ssh = sys.modules.get("harness.console.ssh")
    return ssh is not None and isinstance(channel, ssh.SshChannel)


def open_console(spec: Host, log: Path) -> tuple[SerialChannel, ConsoleWatch]:
    """Open and log the host's serial console, watched for death strings and reboots.

    The host is already up here (booting it is the lab's and the PXE fixture's job), so
    the boot tracker starts in userspace: any restart from now on is unexpected.
    """
    assert spec.console is not None
    # A console server that drops the connection is reconnected, as for netbooted hosts.
    console = SerialChannel(spec.name, spec.console, user=spec.console_login.user,
                            password=spec.console_login.password, console_log=log,
                            reconnect_s=CONSOLE_RECONNECT_S)
    tracker = BootTracker(spec.name)
    tracker.attached_running()
    watch = ConsoleWatch(tracker=tracker, host=spec.name)
    console.open()
    return console, watch


@pytest.fixture(scope="session")
def iperf3_server(host: HostUnderTest) -> Iterator[Iperf3Server]:
    """An iperf3 server on the controller, on the address the host can reach."""
    address = host.all_params.get("network", {}).get("server_address", "127.0.0.1")
    with Iperf3Server(address) as server:
        yield server


@pytest.fixture(autouse=True)
def _vet_stage_context(request: pytest.FixtureRequest) -> Iterator[None]:
    """Point the host's evidence at the stage; attach the stage's slice of the console."""
    name = item_host(request.node)
    stage = item_stage(request.node)
    if name is None or stage is None:
        yield
        return
    vetted: HostUnderTest = request.getfixturevalue("host")
    run = _run(request.config)
    if run is not None and name not in run.failed and run.current_stage.get(name) != stage:
        move(run, name, STAGE_STATES[stage], f"stage {stage}", stage)
        run.current_stage[name] = stage
    if vetted.stage != stage:
        vetted.enter_stage(stage)
        if run is not None:
            # What this stage ran with, next to its verdict: profile defaults merged with
            # the inventory's vet_stages / vet_profiles for this host.
            vetted.evidence.attach_json(f"{stage} parameters (profile {run.profile})",
                                        vetted.params)
    if vetted.watch is not None:
        request.node.stash[CONSOLE_MARK] = vetted.watch.mark()
    yield


def _attach_console_slice(item: pytest.Item, vetted: HostUnderTest) -> None:
    start = item.stash.get(CONSOLE_MARK, None)
    if vetted.watch is None or start is None:
        return
    piece = vetted.watch.slice(start)
    note = f"({piece.dropped} earlier lines only in console.log)\n" if piece.dropped else ""
    vetted.evidence.attach("console (this test)", note + "\n".join(piece.lines))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A console death during the test fails it, even if its commands had finished.

    It is a hardware verdict, so it fails the test (Allure: failed), unlike harness
    trouble such as a missing tool (Allure: broken).
    """
    run = _run(item.config)
    name = item_host(item)
    vetted = run.open_hosts.get(name) if run is not None and name is not None else None
    try:
        result = yield
    except ConsoleDeath as exc:
        pytest.fail(f"ConsoleDeath: {exc}", pytrace=False)
    finally:
        if vetted is not None:
            vetted.finish_plots()  # drawn in the background while the test went on
            _attach_console_slice(item, vetted)
    death = vetted.death_error() if vetted is not None else None
    if death is not None:
        pytest.fail(f"ConsoleDeath: {death}", pytrace=False)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    run = _run(item.config)
    name = item_host(item)
    stage = item_stage(item)
    if run is None or name is None or stage is None:
        return
    # Labels first, so skipped tests too sit under their server and stage.
    # `server`, not `host`: allure-pytest already labels every result host=<controller>.
    allure.dynamic.parent_suite(name)  # type: ignore[no-untyped-call]
    allure.dynamic.suite(stage)  # type: ignore[no-untyped-call]
    allure.dynamic.label("server", name)  # type: ignore[no-untyped-call]
    failed = run.failed.get(name)
    if failed is not None and failed[0] != stage:
        pytest.skip(f"host {name} failed stage {failed[0]} ({failed[1]}); "
                    f"stage {stage} skipped")
    if failed is None and name not in run.current_stage:
        run.store.register_host(run.run_id, name)
        if run.store.host_state(run.run_id, name) is State.REGISTERED:
            move(run, name, State.QUEUED, "picked up by a worker")


def _reason(call: pytest.CallInfo[None], report: pytest.TestReport) -> str:
    if call.excinfo is None:
        return ""
    if call.excinfo.errisinstance(pytest.skip.Exception):
        return str(getattr(call.excinfo.value, "msg", "")).strip()
    text = str(call.excinfo.value).strip() or call.excinfo.typename
    return text.splitlines()[0][:300]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    run = _run(item.config)
    name = item_host(item)
    stage = item_stage(item)
    if run is None or name is None or stage is None:
        return report
    if call.excinfo is not None and call.excinfo.errisinstance(VetError):
        # An operator-facing error: its message is the whole story, no traceback.
        report.longrepr = f"{call.excinfo.typename}: {call.excinfo.value}"
    reason = _reason(call, report)
    earlier = run.failed.get(name)
    if report.when == "teardown" and report.failed and earlier is not None \
            and earlier[0] != stage:
        # A check run at teardown for another stage (SMART after stress) failed the host
        # and recorded its own result: this test's stage is not to blame.
        return report
    if report.when == "call" or (report.when == "setup" and not report.passed) or (
        report.when == "teardown" and report.failed
    ):
        outcome = "error" if report.failed and report.when != "call" else report.outcome
        run.store.record_test(run.run_id, name, stage, item.nodeid, outcome,
                              call.start, call.duration, reason)
    if report.failed and name not in run.failed:
        run.failed[name] = (stage, reason)
        move(run, name, State.FAILED, f"{stage}: {reason}", stage)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[
    None, object, object
]:
    result = yield
    run = _run(item.config)
    name = item_host(item)
    if run is not None and name is not None:
        run.remaining[name] -= 1
        if run.remaining[name] == 0 and name not in run.failed:
            move(run, name, State.REPORTING, "all stages passed")
            move(run, name, State.COMPLETED, "vetted")
    return result


def _resume_run(run: VetRun, plan: ResumePlan) -> None:
    """Take the run over in the store; finish hosts the stop caught in Reporting."""
    run.store.resume_run(run.run_id, os.getpid(), process_start(os.getpid()))
    run.store.add_event(run.run_id, None, "harness", "resumed", {
        "previous_status": plan.previous_status, "previous_pid": plan.previous_pid,
        "hosts": {name: {"state": h.state, "done": list(h.done), "rerun": h.rerun}
                  for name, h in plan.hosts.items()}})
    for name, host_plan in plan.hosts.items():
        if host_plan.state == State.REPORTING.value:
            move(run, name, State.COMPLETED, "vetted (every stage passed before the resume)")


@pytest.hookimpl(specname="pytest_sessionfinish", tryfirst=True)
def pytest_sessionfinish_note_interrupted(session: pytest.Session, exitstatus: int) -> None:
    """Before the fixtures' teardown: note where an interrupted run left its hosts."""
    run = _run(session.config)
    if run is not None and exitstatus == pytest.ExitCode.INTERRUPTED:
        _note_interrupted(run)


def _note_interrupted(run: VetRun) -> None:
    """Interrupted hosts stay in the state they were in (not Failed: nothing failed on
    them), with the reason and an `interrupted` event; `--resume` continues them."""
    why = f"interrupted by operator ({run.interrupts.name or 'SIGINT'})"
    names = list(run.open_hosts) if run.is_worker else list(run.hosts)
    for name in names:
        state = run.store.host_state(run.run_id, name)
        if name in run.failed or state is None or state in (
                State.REGISTERED, State.COMPLETED, State.FAILED, State.HOLDING,
                State.RELEASED):
            continue
        # The worker knows the stage it was in; the controller reads it from the state,
        # so whichever of them notes the host first words it the same way.
        stage = run.current_stage.get(name) or STATE_STAGES.get(state)
        reason = (f"{why} {f'during stage {stage}' if stage else f'in {state}'}; "
                  f"`--resume {run.run_id}` continues it")
        # A worker's note wins; the controller only fills in for a worker that made none.
        if not run.store.note_host(run.run_id, name, reason,
                                   keep_prefix=None if run.is_worker else "interrupted"):
            continue
        vetted = run.open_hosts.get(name)
        if vetted is not None:
            vetted.events.emit("harness", "interrupted", stage=stage, reason=reason,
                               signal=run.interrupts.name)
        run.store.add_event(run.run_id, name, "harness", "interrupted",
                            {"stage": stage, "state": str(state), "reason": reason})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = _run(session.config)
    if run is None:
        return
    for vetted in list(run.open_hosts.values()):
        vetted.close()
    if not run.is_worker:
        failed = any(h["state"] != State.COMPLETED.value for h in run.store.hosts(run.run_id))
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        status = "interrupted" if interrupted else ("failed" if failed else "passed")
        run.store.finish_run(run.run_id, status)
        run.notifier.run_completed(status, run.store.hosts(run.run_id))
    # Workers send their hosts' events, the controller RunCompleted; each waits for its own
    # deliveries at most the notification bound and records them for the summary.
    run.notifier.drain()
    run.notifier.record(run.store)
    if run.resume is not None and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK  # resumed a run with nothing left to do


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = _run(config)
    if run is None or run.is_worker:
        return
    terminalreporter.section(f"vet run {run.run_id} ({run.profile})")
    for line in render_summary(run.store, run.run_id).splitlines():
        terminalreporter.line(line)
    for line in summary_lines(run.store, run.run_id):
        terminalreporter.line(line)
    for line in hold_lines(run.store, run.run_id):
        terminalreporter.line(line)
    terminalreporter.line(f"store: {run.store_path}   evidence: {run.run_dir}")
    terminalreporter.line("report: vet report" + (
        f" --store {run.store_path}" if config.getoption("vet_store") else ""))


def pytest_unconfigure(config: pytest.Config) -> None:
    run = _run(config)
    if run is not None:
        if run.leased:
            release_leases(run.store, run.run_id)
        run.interrupts.uninstall()
        if run.plot_server is not None:
            stop_plot_server(run.plot_server)
        run.close()


__all__ = ["RUN_KEY", "VetRun", "host", "item_host", "item_stage", "new_run_id"]
