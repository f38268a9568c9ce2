"""Simulated hosts (a real sshd each, no QEMU) driven by a real vet run: the controller's
own cost per host and per stage.

One network namespace holds `--hosts` addresses (10.79.X.10 and up), one OpenSSH sshd on
each (its own throwaway host key; one client key), reached from the controller through
one veth pair. One namespace with many addresses rather than a namespace per host: what
is measured is the controller (pytest, its xdist workers, their SSH channels), which
sees one address per host either way; 50 namespaces would add 50 veth pairs and a bridge
and measure nothing more. An inventory is generated for them (connection ssh, host keys
pinned) and `pytest -n K` runs a light profile on them: five stages (inventory, cpu,
memory, storage, network), each a few short commands and one command of a fixed
duration set by a profile override in the inventory (`vet_stages: {cpu: {duration_s}}`...).

Reported per run (K = each of `--workers`):
* controller wall and CPU seconds (pytest and its workers, getrusage of the children),
  per host; the peak of the summed RSS of pytest and its workers, per host, and the
  peaks of their summed PSS and USS (smaps_rollup; RSS counts shared pages once per
  process), with each process's RSS/PSS/USS at the RSS peak;
* per stage: wall (from the host's move into the stage to its move into the next, from the
  event log) minus the time its commands ran on the host (command-end duration_s):
  the harness's overhead per stage, and its share of the run.
Everything it starts (sshd, sessions, the namespace, the veth) is removed and checked.

    .venv/bin/python benchmarks/bench_fleet.py [--hosts 50] [--workers 2 4 8]
        [--stage-s 1.0] [--profile-out DIR] [--without-addopts]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

from tests.fixtures.sshd import SSHD, fingerprint, keygen, skip_reason

REPO = Path(__file__).resolve().parents[1]

STAGES = ("inventory", "cpu", "memory", "storage", "network")

LIGHT_SUITE = '''\
"""A light profile for simulated hosts: each stage a few short commands and one of a
fixed duration (the stage's duration_s, set in the inventory's vet_stages)."""
import pytest

pytestmark = pytest.mark.stage


def _stage(host):
    assert host.run("uname -r", timeout=60).ok
    assert host.run("cat /proc/loadavg", timeout=60).ok
    # The profile's own duration parameter (storage: runtime_s; inventory has none: cpu's).
    seconds = host.params.get("duration_s", host.params.get("runtime_s"))
    seconds = host.all_params["cpu"]["duration_s"] if seconds is None else seconds
    assert host.run(f"sleep {seconds}", timeout=120).ok
    host.measure("figure", 1.0, "unit")


@pytest.mark.inventory
def test_inventory(host):
    _stage(host)


@pytest.mark.cpu
def test_cpu(host):
    _stage(host)


@pytest.mark.memory
def test_memory(host):
    _stage(host)


@pytest.mark.storage
def test_storage(host):
    _stage(host)


@pytest.mark.network
def test_network(host):
    _stage(host)
'''


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


@dataclass
class SimHost:
    name: str
    address: str
    host_key: Path
    proc: subprocess.Popen[bytes] | None = None


class Fleet:
    """The namespace, the veth and one sshd per simulated host."""

    def __init__(self, workdir: Path, count: int) -> None:
        self.workdir = workdir
        tag = os.getpid() % 100000
        self.netns = f"vetbench-{tag}"
        self.veth = f"vb{tag}"
        self.subnet = f"10.79.{tag % 250}"
        self.client_key = keygen(workdir / "client_key")
        (workdir / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        self.hosts = [SimHost(f"sim{i:03d}", f"{self.subnet}.{10 + i}",
                              keygen(workdir / f"host_key_{i:03d}")) for i in range(count)]

    def up(self) -> None:
        taken = sh("ip", "-4", "-o", "addr")
        if f" {self.subnet}." in taken:
            raise SystemExit(f"{self.subnet}.0/24 is in use on this machine")
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "simnet", "netns",
           self.netns)
        sh("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.veth)
        sh("ip", "link", "set", self.veth, "up")
        ns = ("ip", "netns", "exec", self.netns)
        sh(*ns, "ip", "link", "set", "lo", "up")
        sh(*ns, "ip", "link", "set", "dev", "simnet", "up")
        for host in self.hosts:
            sh(*ns, "ip", "addr", "add", f"{host.address}/24", "dev", "simnet")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for host in self.hosts:
            host.proc = self._sshd(host)
        for host in self.hosts:
            self._wait_listening(host, time.monotonic() + 60)

    def _sshd(self, host: SimHost) -> subprocess.Popen[bytes]:
        config = self.workdir / f"sshd_config_{host.name}"
        config.write_text("\n".join([
            f"ListenAddress {host.address}", "Port 22", f"HostKey {host.host_key}",
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
            f"PidFile {self.workdir / f'sshd_{host.name}.pid'}", "StrictModes no",
            "UsePAM no", "UseDNS no", "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "MaxStartups 200",
        ]) + "\n")
        return subprocess.Popen(
            ["ip", "netns", "exec", self.netns, str(SSHD), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    @staticmethod
    def _wait_listening(host: SimHost, deadline: float) -> None:
        assert host.proc is not None and host.proc.stderr is not None
        seen = b""
        fd = host.proc.stderr.fileno()
        while b"Server listening on" not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise SystemExit(f"sshd of {host.name} did not start: {seen!r}")
            data = os.read(fd, 65536)
            if not data:
                raise SystemExit(f"sshd of {host.name} exited: {seen!r}")
            seen += data
        # Drain the rest of its log in the background (an undrained pipe stalls sshd).
        threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(fd, 65536), b"")],
                         daemon=True).start()

    def inventory(self, stage_s: float) -> dict[str, Any]:
        hosts = {
            h.name: {
                "ansible_host": h.address, "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.client_key),
                "vet_ssh_host_key": fingerprint(Path(f"{h.host_key}.pub")),
                "vet_macs": [f"52:54:00:79:{i // 256:02x}:{i % 256:02x}"],
            } for i, h in enumerate(self.hosts)
        }
        stages = {"cpu": {"duration_s": stage_s}, "memory": {"duration_s": stage_s},
                  "storage": {"runtime_s": stage_s}, "network": {"duration_s": stage_s}}
        return {"all": {"vars": {"vet_stages": stages}, "hosts": hosts}}

    def down(self) -> list[str]:
        """Remove everything; return what survived (empty when clean)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            for pid in sh("ip", "netns", "pids", self.netns).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        for host in self.hosts:
            if host.proc is not None:
                host.proc.kill()
                host.proc.wait(timeout=30)
        left = []
        with contextlib.suppress(subprocess.CalledProcessError):
            left += [f"process {p}" for p in sh("ip", "netns", "pids", self.netns).split()]
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True, timeout=60,
                       check=False)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=60,
                       check=False)
        if self.netns in sh("ip", "netns", "list"):
            left.append(f"namespace {self.netns}")
        if subprocess.run(["ip", "link", "show", self.veth], capture_output=True,
                          timeout=60, check=False).returncode == 0:
            left.append(f"link {self.veth}")
        return left


@contextlib.contextmanager
def fleet(workdir: Path, count: int) -> Iterator[Fleet]:
    made = Fleet(workdir, count)
    try:
        made.up()
        yield made
    finally:
        left = made.down()
        if left:
            print(f"LEFT BEHIND: {', '.join(left)}", file=sys.stderr)
        else:
            print(f"cleaned up: namespace {made.netns}, veth {made.veth}, "
                  f"{len(made.hosts)} sshd", file=sys.stderr)


def tree_memory(root: int) -> dict[int, tuple[str, int, int, int]]:
    """`root` and its descendants (pytest and its xdist workers): per process its name and
    RSS, PSS and USS in bytes (/proc/PID/smaps_rollup). RSS counts the shared libraries and
    the pages a worker shares with its parent in full in every process; PSS splits them
    among the processes that map them; USS counts only a process's own pages."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found: dict[int, tuple[str, int, int, int]] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        try:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024
                      for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]}
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        name = "pytest" if pid == root else "worker" if cmdline[0] else "other"
        found[pid] = (name, fields.get("Rss", 0), fields.get("Pss", 0),
                      fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0))
        todo += [p for p, parent in parents.items() if parent == pid]
    return found


def repo_addopts() -> list[str]:
    """The repository's pytest addopts (pyproject.toml): a vet run from the repository gets
    them; the benchmark's project is a temporary directory that would not."""
    ini = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    opts = ini.get("addopts", [])
    return shlex.split(opts) if isinstance(opts, str) else [str(o) for o in opts]


def drive(project: Path, workers: int, run_id: str, profile_out: Path | None,
          addopts: list[str]) -> dict[str, Any]:
    """One pytest run over the fleet; its wall, CPU and peak RSS, PSS and USS."""
    argv = [sys.executable, "-m", "pytest", "-p", "harness.pytest_plugin", "--inventory",
            "hosts.yml", "-p", "no:cacheprovider", *addopts, "-q", "test_light.py",
            "--run-id", run_id,
            *(["-n", str(workers)] if workers else [])]  # 0: one process, no xdist
    if profile_out is not None:  # the controller under pyinstrument (workers: see docs)
        argv[1:3] = ["-m", "pyinstrument", "-r", "text", "-o",
                     str(profile_out / f"{run_id}.txt"), "-m", "pytest"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(os.environ, NO_COLOR="1"))
    peak = {"rss": 0, "pss": 0, "uss": 0}
    at_peak: dict[int, tuple[str, int, int, int]] = {}
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()  # type: ignore[union-attr]
                                                           ), daemon=True)
    reader.start()
    while proc.poll() is None:
        sample = tree_memory(proc.pid)
        totals = {"rss": sum(v[1] for v in sample.values()),
                  "pss": sum(v[2] for v in sample.values()),
                  "uss": sum(v[3] for v in sample.values())}
        if totals["rss"] > peak["rss"]:
            at_peak = sample
        peak = {key: max(peak[key], totals[key]) for key in peak}
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
    wall = time.monotonic() - started
    reader.join(timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = b"".join(output).decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"the vet run failed ({proc.returncode}):\n{text[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    mb = 2**20
    by_process = ", ".join(f"{name} {rss / mb:.0f}/{pss / mb:.0f}/{uss / mb:.0f}"
                           for name, rss, pss, uss in sorted(at_peak.values()))
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss": float(peak["rss"]),
            "peak_pss": float(peak["pss"]), "peak_uss": float(peak["uss"]),
            "by_process": by_process}


def stage_overheads(run_dir: Path) -> dict[str, list[float]]:
    """Per stage, each host's (wall - command time), from the hosts' event logs."""
    walls: dict[str, list[float]] = defaultdict(list)
    tools: dict[str, list[float]] = defaultdict(list)
    for events_file in run_dir.glob("*/events.jsonl"):
        events = [json.loads(line) for line in events_file.read_text().splitlines()]
        marks = [(e["at"], e.get("stage")) for e in events
                 if e["kind"] == "state" and e.get("stage") in STAGES]
        ends = [e["at"] for e in events if e["kind"] in ("host-closed",)]
        end = ends[-1] if ends else events[-1]["at"]
        used: dict[str, float] = defaultdict(float)
        for e in events:
            if e["kind"] == "command-end" and e.get("duration_s") is not None:
                used[_stage_at(marks, e["at"])] += float(e["duration_s"])
        for i, (at, stage) in enumerate(marks):
            until = marks[i + 1][0] if i + 1 < len(marks) else end
            walls[stage].append(until - at)
            tools[stage].append(used[stage])
    return {stage: [w - t for w, t in zip(walls[stage], tools[stage], strict=True)]
            for stage in STAGES if walls[stage]} | {
        f"{stage}:wall": walls[stage] for stage in STAGES if walls[stage]}


def _stage_at(marks: list[tuple[float, str]], at: float) -> str:
    current = marks[0][1] if marks else ""
    for when, stage in marks:
        if when <= at:
            current = stage
    return current


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8],
                        help="xdist workers per run (0: no xdist, one process)")
    parser.add_argument("--stage-s", type=float, default=1.0,
                        help="the fixed-duration command of each stage (vet_stages override)")
    parser.add_argument("--profile-out", type=Path, default=None,
                        help="run the controller under pyinstrument, text reports here")
    parser.add_argument("--without-addopts", action="store_true",
                        help="leave out the repository's pytest addopts (-p no:labgrid)")
    args = parser.parse_args()
    reason = skip_reason()
    if reason is not None or shutil.which("ip") is None:
        print(f"cannot run: {reason or 'ip (iproute2) is missing'}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, fleet(Path(tmp), args.hosts) as made:
        project = Path(tmp) / "project"
        project.mkdir()
        (project / "hosts.yml").write_text(json.dumps(made.inventory(args.stage_s)))
        (project / "test_light.py").write_text(LIGHT_SUITE)
        print(f"{args.hosts} simulated hosts (sshd in namespace {made.netns}), 5 stages of "
              f"{args.stage_s:g} s + 2 short commands each; {os.cpu_count()} CPUs, load "
              f"average {os.getloadavg()[0]:.1f}")
        print(f"{'-n':>3} {'wall s':>7} {'wall/host':>9} {'CPU s':>7} {'CPU/host':>8} "
              f"{'RSS MB':>7} {'RSS/host':>8} {'PSS/host':>8} {'USS/host':>8} "
              f"{'ovh/stage p50':>13} {'p95':>6} {'share':>6}")
        for workers in args.workers:
            run_id = f"fleet-n{workers}"
            r = drive(project, workers, run_id, args.profile_out,
                      [] if args.without_addopts else repo_addopts())
            over = stage_overheads(project / "reports" / "runs" / run_id)
            all_over = sorted(x for s in STAGES for x in over.get(s, []))
            all_wall = sum(x for s in STAGES for x in over.get(f"{s}:wall", []))
            share = sum(all_over) / all_wall if all_wall else float("nan")
            n = args.hosts
            print(f"{workers:>3} {r['wall_s']:>7.1f} {r['wall_s'] / n:>9.2f} {r['cpu_s']:>7.1f} "
                  f"{r['cpu_s'] / n:>8.2f} {r['peak_rss'] / 2**20:>7.0f} "
                  f"{r['peak_rss'] / 2**20 / n:>8.1f} {r['peak_pss'] / 2**20 / n:>8.1f} "
                  f"{r['peak_uss'] / 2**20 / n:>8.1f} {statistics.median(all_over):>13.2f} "
                  f"{all_over[int(len(all_over) * 0.95)]:>6.2f} {share:>6.1%}", flush=True)
            print(f"      at the RSS peak, per process RSS/PSS/USS MB: {r['by_process']}")
            for stage in STAGES:
                values = over.get(stage, [])
                if values:
                    print(f"      {stage:10} overhead p50 {statistics.median(values):.2f} s, "
                          f"max {max(values):.2f} s over {len(values)} hosts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
