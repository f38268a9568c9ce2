"""Cost of one short command (`true`) over SSH, four ways, against a local sshd.

(a) OpenSSH client, a new connection per command; (b) OpenSSH with a ControlMaster
connection reused; (c) paramiko exec_command on one connection (a new session per
command); (d) SshChannel.run on its persistent shell. The benchmark starts its own
sshd on 127.0.0.1 (as root, like the tests: tests/fixtures/sshd.py) and stops it.
Prints mean, p50 and p95 per command and each way's mean relative to SshChannel's.

    .venv/bin/python benchmarks/bench_ssh.py [--repeat 100]
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


def bench(server: Sshd, tmp: Path, repeat: int) -> dict[str, list[float]]:
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
    return results


def table(results: dict[str, list[float]]) -> str:
    ours = statistics.mean(results["(d) SshChannel.run"])
    lines = [f"{'way':34} {'n':>5} {'mean ms':>9} {'p50 ms':>8} {'p95 ms':>8} {'vs (d)':>8}"]
    for name, times in results.items():
        p95 = statistics.quantiles(times, n=100)[94]
        lines.append(
            f"{name:34} {len(times):5d} {statistics.mean(times) * 1e3:9.1f} "
            f"{statistics.median(times) * 1e3:8.1f} {p95 * 1e3:8.1f} "
            f"{statistics.mean(times) / ours:7.1f}x"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=100, help="commands per way")
    args = parser.parse_args()
    reason = skip_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, running_sshd(Path(tmp) / "sshd") as server:
        results = bench(server, Path(tmp), args.repeat)
    load = os.getloadavg()[0]
    print(f"`true` over SSH to 127.0.0.1, {os.cpu_count()} CPUs, load average {load:.1f}")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
