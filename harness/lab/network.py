"""The lab's network: a namespace with a bridge, the guests' taps on it, and a veth that
connects the controller (in the root namespace) to the bridge.

QEMU runs in the root namespace (so its serial console and QMP sockets sit on this
machine's loopback and filesystem, like a console server and a BMC would), opens its tap
there, and the lab then moves the tap into the namespace: a tap keeps working across
the move. Nothing routes out of the namespace; the controller reaches only the lab subnet.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Sequence

from harness.lab.daemon import LabError


def ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGV`; a failure names the command and iproute2's message."""
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise LabError(f"`ip {' '.join(argv)}` failed: {done.stderr.strip() or done.stdout}")
    return done


def ns_argv(netns: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def netns_exists(netns: str) -> bool:
    listed = ip("-j", "netns", "list", check=False).stdout.strip()
    try:
        return any(entry.get("name") == netns for entry in json.loads(listed or "[]"))
    except json.JSONDecodeError:
        return False


def link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["-n", netns] if netns else []
    return ip(*argv, "link", "show", "dev", name, check=False).returncode == 0


def conflicting_routes(network: ipaddress.IPv4Network, own_device: str) -> list[str]:
    """Routes in the root namespace that overlap the lab subnet (other than the lab's own)."""
    out = ip("-j", "-4", "route", "show", "table", "all", check=False).stdout
    found = []
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("dev") == own_device:
            continue
        try:
            other = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if other.overlaps(network) and route.get("type") not in ("local", "broadcast"):
            found.append(f"{dst} dev {route.get('dev', '?')}")
    return found


#: The bridge's IPv6 address when the PXE server sends router advertisements: dnsmasq
#: only advertises a prefix (dnsmasq.conf.j2: dhcp-range=fd77::,ra-only,64) that one of
#: the interface's addresses is in. Without an answer iPXE waits ~13 s for IPv6.
RA_ADDRESS = "fd77::1/64"


def create(netns: str, bridge: str, server_cidr: str, veth_host: str, veth_lab: str,
           controller_cidr: str, ipv6_cidr: str | None = None) -> None:
    """Namespace, bridge with the PXE server's address, and the controller's veth."""
    ip("netns", "add", netns)
    ip("-n", netns, "link", "set", "lo", "up")
    ip("-n", netns, "link", "add", bridge, "type", "bridge")
    # No STP and no forwarding delay: a guest's first DHCP packet must not be dropped.
    ip("-n", netns, "link", "set", bridge, "type", "bridge", "stp_state", "0",
       "forward_delay", "0")
    ip("-n", netns, "addr", "add", server_cidr, "dev", bridge)
    if ipv6_cidr:
        # nodad: usable at once (duplicate address detection would hold it ~1 s).
        ip("-n", netns, "addr", "add", ipv6_cidr, "dev", bridge, "nodad")
    ip("-n", netns, "link", "set", bridge, "up")
    ip("link", "add", veth_host, "type", "veth", "peer", "name", veth_lab)
    ip("link", "set", veth_lab, "netns", netns)
    ip("-n", netns, "link", "set", veth_lab, "master", bridge, "up")
    ip("addr", "add", controller_cidr, "dev", veth_host)
    ip("link", "set", veth_host, "up")


def attach_tap(netns: str, bridge: str, tap: str) -> None:
    """Move a tap QEMU has opened into the lab namespace and plug it into the bridge."""
    ip("link", "set", tap, "netns", netns)
    ip("-n", netns, "link", "set", tap, "master", bridge, "up")


def destroy(netns: str, veth_host: str) -> list[str]:
    """Remove the namespace (its bridge, taps and the veth's far end go with it) and the
    controller's veth; returns what could not be removed."""
    left = []
    if netns_exists(netns):
        for pid in ip("netns", "pids", netns, check=False).stdout.split():
            left.append(f"process {pid} still in namespace {netns}")
        done = ip("netns", "del", netns, check=False)
        if done.returncode != 0 or netns_exists(netns):
            left.append(f"namespace {netns}: {done.stderr.strip()}")
    if link_exists(veth_host):
        ip("link", "del", veth_host, check=False)
        if link_exists(veth_host):
            left.append(f"interface {veth_host}")
    return left
