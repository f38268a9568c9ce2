"""SshChannel when the network between vet and the host goes away mid-command (issue 3).

The host is a real OpenSSH sshd (tests/fixtures/sshd.py) started with `ip netns exec` in
a network namespace of the test's own, reached over a veth pair in 10.78.N.0/24 (N random,
checked free against this machine's routes and addresses). Once `sleep 60` runs on it the
network is cut: vet's end of the link goes down, the host's end goes down (packets vanish
with no error on vet's side), the host's end is deleted, or netem drops every packet
(when the kernel has sch_netem). run() must end within dead_after (5 s) plus scheduling
slack with a ChannelError naming the host and the command, a retry must fail within its
connect timeout, and afterwards the namespace, the veth pair and every process of sshd
must be gone. No traffic leaves the pair: both of its addresses are the test's own.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

import tests.fixtures.sshd as sshd_fixture
from harness.console import ChannelError, OutputLine
from tests.fixtures.sshd import Sshd
from tests.helpers import gone

DEAD_AFTER = 5.0
MARGIN = 1.5  # scheduling slack on a loaded machine
CONNECT_TIMEOUT = 2.0
SUBNETS = ipaddress.IPv4Network("10.78.0.0/16")


def _ip(*args: str, missing_ok: bool = False) -> str:
    """Run `ip ARGS`; with missing_ok, a device or namespace already gone is no error."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        gone_already = "Cannot find device" in done.stderr or "No such file" in done.stderr
        if not (missing_ok and gone_already):
            raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _in_use() -> list[ipaddress.IPv4Network]:
    """IPv4 networks this machine routes or holds addresses in (default routes aside)."""
    found = []
    for route in json.loads(_ip("-4", "-j", "route", "show", "table", "all") or "[]"):
        if route.get("dst", "default") != "default":
            found.append(ipaddress.ip_network(route["dst"], strict=False))
    for link in json.loads(_ip("-4", "-j", "addr", "show") or "[]"):
        for addr in link.get("addr_info", []):
            found.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}",
                                              strict=False))
    return [net for net in found if isinstance(net, ipaddress.IPv4Network)]


def _routes_to(subnet: ipaddress.IPv4Network) -> list[str]:
    """Devices of the routes that reach into `subnet`."""
    return [route.get("dev", "?")
            for route in json.loads(_ip("-4", "-j", "route", "show", "table", "all") or "[]")
            if route.get("dst", "default") != "default"
            and ipaddress.ip_network(route["dst"], strict=False).overlaps(subnet)]


@dataclass(frozen=True)
class Island:
    """A namespace joined to this one by a veth pair: the host's network, the test's own."""

    netns: str
    vet_end: str  # in the root namespace
    host_end: str  # in `netns`
    vet_ip: str
    host_ip: str


@contextlib.contextmanager
def island() -> Iterator[Island]:
    token = secrets.token_hex(4)
    netns, vet_end, host_end = f"vet-netloss-{token}", f"vnl{token}v", f"vnl{token}h"
    try:
        _ip("netns", "add", netns)
        _ip("link", "add", vet_end, "type", "veth", "peer", "name", host_end, "netns", netns)
        subnets = list(SUBNETS.subnets(new_prefix=24))
        for _attempt in range(20):
            subnet = random.choice(subnets)
            if any(subnet.overlaps(net) for net in _in_use()):
                continue
            vet_ip, host_ip = str(subnet[1]), str(subnet[2])
            _ip("addr", "add", f"{vet_ip}/24", "dev", vet_end)
            _ip("link", "set", vet_end, "up")
            if set(_routes_to(subnet)) == {vet_end}:  # nobody took it meanwhile
                break
            _ip("addr", "flush", "dev", vet_end)
        else:
            raise RuntimeError(f"no free /24 in {SUBNETS} after 20 tries")
        _ip("-n", netns, "addr", "add", f"{host_ip}/24", "dev", host_end)
        _ip("-n", netns, "link", "set", host_end, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        yield Island(netns, vet_end, host_end, vet_ip, host_ip)
    finally:
        _ip("link", "del", vet_end, missing_ok=True)  # takes its peer with it
        _ip("netns", "del", netns, missing_ok=True)


@contextlib.contextmanager
def sshd_in(net: Island, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sshd]:
    """The fixture's sshd, started in the island's namespace through `ip netns exec`."""
    wrapper = workdir / "sshd-in-netns"
    wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {net.netns} {sshd_fixture.SSHD} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(sshd_fixture, "SSHD", wrapper)
    server = Sshd(workdir / "sshd", address=net.host_ip)
    server.start(port=22)  # the namespace is the test's own: nothing else listens there
    try:
        yield server
    finally:
        server.stop()


def _netem_missing(net: Island) -> str | None:
    done = subprocess.run(["tc", "qdisc", "add", "dev", net.vet_end, "root", "netem", "loss",
                           "0%"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return f"tc netem is not available here: {done.stderr.strip()}"
    subprocess.run(["tc", "qdisc", "del", "dev", net.vet_end, "root"], check=True, timeout=30)
    return None


CUTS: dict[str, Callable[[Island], object]] = {
    "vet's link down": lambda net: _ip("link", "set", net.vet_end, "down"),
    "host's link down, packets vanish": lambda net: _ip(
        "-n", net.netns, "link", "set", net.host_end, "down"),
    "host's end deleted": lambda net: _ip("-n", net.netns, "link", "del", net.host_end),
    "netem drops every packet": lambda net: subprocess.run(
        ["tc", "qdisc", "add", "dev", net.vet_end, "root", "netem", "loss", "100%"],
        check=True, timeout=30),
}


@pytest.mark.parametrize("cut", list(CUTS))
def test_network_gone_mid_command_ends_it_within_dead_after(
    cut: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    reason = sshd_fixture.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    before = set(threading.enumerate())
    with island() as net:
        if cut.startswith("netem") and (missing := _netem_missing(net)) is not None:
            pytest.skip(missing)
        with sshd_in(net, tmp_path, monkeypatch) as server:
            channel = server.channel("node07", dead_after=DEAD_AFTER,
                                     connect_timeout=CONNECT_TIMEOUT)
            cut_at: list[float] = []

            def on_line(line: OutputLine) -> None:
                if line.text == "started":
                    CUTS[cut](net)
                    cut_at.append(time.monotonic())

            try:
                with pytest.raises(ChannelError) as err:
                    channel.run("echo started; sleep 60", timeout=60, on_line=on_line)
                noticed = time.monotonic() - cut_at[0]
                assert noticed <= DEAD_AFTER + MARGIN, f"noticed {noticed:.2f} s after the cut"
                message = str(err.value)
                assert "node07" in message and "sleep 60" in message, message
                assert "connection lost" in message, message

                started = time.monotonic()  # the host is still unreachable: no hang either
                with pytest.raises(ChannelError, match="node07"):
                    channel.run("true", timeout=10)
                assert time.monotonic() - started <= CONNECT_TIMEOUT + MARGIN
            finally:
                started = time.monotonic()
                channel.close()
                closing = time.monotonic() - started
            assert closing <= MARGIN, f"close() took {closing:.2f} s"
            processes = server.tree()  # sshd, its sessions, the shell, `sleep 60`
            assert len(processes) >= 2
        assert all(gone(pid) for pid in processes)
    assert net.netns not in _ip("netns", "list")
    assert not Path("/run/netns", net.netns).exists()
    links = subprocess.run(["ip", "link", "show", net.vet_end], capture_output=True,
                           timeout=30)
    assert links.returncode != 0, f"{net.vet_end} survived"
    assert not any(isinstance(t, paramiko.Transport) and t.is_alive()
                   for t in set(threading.enumerate()) - before)
