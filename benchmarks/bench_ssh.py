"""Cost of one short command (`true`) over SSH, six ways, against a local sshd.

(a) OpenSSH client, a new connection per command; (b) OpenSSH with a ControlMaster
connection reused; (c) paramiko exec_command on one connection (a new session per
command); (d) SshChannel.run on its persistent shell; (e) an Ansible ad-hoc call per
command, `ansible all -i HOST, -m command -a true`, and (f) the same with `-m raw`
(Ansible's own defaults: its ControlPersist connection is reused between calls). The
benchmark starts its own sshd on 127.0.0.1 (as root, like the tests:
tests/fixtures/sshd.py) and stops it, and Ansible's control socket with it. Prints
mean, p50 and p95 per command, each way's mean relative to SshChannel's, and those
ratios against the issue's targets (30x, 10x, 100x).

    .venv/bin/python benchmarks/bench_ssh.py [--repeat 100] [--ansible-repeat 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

from tests.fixtures.sshd import Sshd, running_sshd, skip_reason


def measure(call: Callable[[], object], repeat: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def openssh(server: Sshd, known_hosts: Path, *options: str) -> list[str]:
    return [
        "ssh", "-F", "/dev/null", "-i", str(server.client_key), "-p", str(server.port),
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "LogLevel=ERROR",
        *options, f"root@{server.address}",
    ]


def run_checked(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


def ansible_adhoc(server: Sshd, tmp: Path, known_hosts: Path, module: str) -> list[str]:
    """The ad-hoc call an operator would type, pinned to the benchmark's sshd and key."""
    ssh_args = f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"
    return [
        str(Path(sys.executable).with_name("ansible")), "all", "-i", f"{server.address},",
        "-u", "root", "--private-key", str(server.client_key),
        "-e", f"ansible_port={server.port}", "-e", f"ansible_ssh_common_args='{ssh_args}'",
        "-e", "ansible_python_interpreter=/usr/bin/python3",
        "-m", module, "-a", "true",
    ]


def ansible_env(tmp: Path) -> dict[str, str]:
    """Ansible's state (control sockets, temp files) under the benchmark's directory."""
    return dict(
        os.environ,
        ANSIBLE_CONFIG=str(tmp / "no-ansible.cfg"),
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(tmp / "cp"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-local"),
        ANSIBLE_REMOTE_TMP=str(tmp / "ansible-remote"),
        ANSIBLE_NOCOLOR="1",
    )


def stop_ansible_masters(tmp: Path, server: Sshd) -> None:
    """Ansible leaves a ControlPersist master per host: ask each one to exit."""
    for socket_path in (tmp / "cp").glob("*") if (tmp / "cp").exists() else []:
        subprocess.run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit",
                        f"root@{server.address}"], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL, check=False)


def bench(server: Sshd, tmp: Path, repeat: int, ansible_repeat: int = 10
          ) -> dict[str, list[float]]:
    known_hosts = tmp / "known_hosts"
    key_type, key = Path(f"{server.host_key}.pub").read_text().split()[:2]
    known_hosts.write_text(f"[{server.address}]:{server.port} {key_type} {key}\n")
    results: dict[str, list[float]] = {}

    plain = openssh(server, known_hosts)
    results["(a) OpenSSH, new connection each"] = measure(
        lambda: run_checked([*plain, "true"]), repeat
    )

    socket_path = str(tmp / "cm")
    shared = openssh(server, known_hosts, "-o", f"ControlPath={socket_path}")
    run_checked([*shared[:-1], "-o", "ControlMaster=yes", "-o", "ControlPersist=600",
                 "-f", "-N", shared[-1]])
    try:
        results["(b) OpenSSH, ControlMaster"] = measure(
            lambda: run_checked([*shared, "true"]), repeat
        )
    finally:
        run_checked([*shared[:-1], "-O", "exit", shared[-1]])

    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(server.address, server.port, "root", key_filename=str(server.client_key),
                   look_for_keys=False, allow_agent=False)

    def exec_true() -> None:
        _, stdout, _ = client.exec_command("true")
        if stdout.channel.recv_exit_status() != 0:
            raise RuntimeError("true failed over exec_command")

    try:
        results["(c) paramiko exec_command"] = measure(exec_true, repeat)
    finally:
        client.close()

    channel = server.channel("bench")
    channel.connect()
    try:
        results["(d) SshChannel.run"] = measure(lambda: channel.run("true", timeout=10), repeat)
    finally:
        channel.close()

    if ansible_repeat > 0:
        env = ansible_env(tmp)
        try:
            for label, module in (("(e) Ansible ad-hoc, -m command", "command"),
                                  ("(f) Ansible ad-hoc, -m raw", "raw")):
                argv = ansible_adhoc(server, tmp, known_hosts, module)
                results[label] = measure(
                    lambda argv=argv: subprocess.run(  # type: ignore[misc]
                        argv, check=True, stdin=subprocess.DEVNULL, capture_output=True,
                        timeout=120, env=env, cwd=tmp),
                    ansible_repeat, warmup=1)
        finally:
            stop_ansible_masters(tmp, server)
    return results


#: The issue's targets: SshChannel at least this many times faster than each way.
TARGETS = {
    "(a) OpenSSH, new connection each": 30.0,
    "(b) OpenSSH, ControlMaster": 10.0,
    "(e) Ansible ad-hoc, -m command": 100.0,
    "(f) Ansible ad-hoc, -m raw": 100.0,
}


def verdicts(results: dict[str, list[float]]) -> str:
    ours = statistics.mean(results["(d) SshChannel.run"])
    lines = []
    for name, target in TARGETS.items():
        if name in results:
            ratio = statistics.mean(results[name]) / ours
            verdict = "met" if ratio >= target else "MISSED"
            lines.append(f"{name:34} {ratio:7.1f}x  target >= {target:g}x  {verdict}")
    return "\n".join(lines)


def table(results: dict[str, list[float]]) -> str:
    ours = statistics.mean(results["(d) SshChannel.run"])
    lines = [f"{'way':34} {'n':>5} {'mean ms':>9} {'p50 ms':>8} {'p95 ms':>8} {'vs (d)':>8}"]
    for name, times in results.items():
        p95 = statistics.quantiles(times, n=100)[94] if len(times) > 1 else times[0]
        lines.append(
            f"{name:34} {len(times):5d} {statistics.mean(times) * 1e3:9.1f} "
            f"{statistics.median(times) * 1e3:8.1f} {p95 * 1e3:8.1f} "
            f"{statistics.mean(times) / ours:7.1f}x"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=100, help="commands per way")
    parser.add_argument("--ansible-repeat", type=int, default=10,
                        help="Ansible ad-hoc calls per module (each takes seconds); 0: none")
    args = parser.parse_args()
    reason = skip_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, running_sshd(Path(tmp) / "sshd") as server:
        results = bench(server, Path(tmp), args.repeat, args.ansible_repeat)
    load = os.getloadavg()[0]
    print(f"`true` over SSH to 127.0.0.1, {os.cpu_count()} CPUs, load average {load:.1f}")
    print(table(results))
    print()
    print(verdicts(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
