"""`ip -j link` and `ip -j route get ADDR` -> interface names (iproute2's JSON).

The network stage finds each expected NIC by its MAC, and the interface that carries the
iperf3 traffic by asking the kernel's routing table, not by guessing from names.
"""

from __future__ import annotations

from harness.probes._common import expect_dict, expect_list, fail, load_json, opt_str

TOOL = "ip"


def parse_ip_link(text: str) -> dict[str, str]:
    """MAC address (lower case) -> interface name, for every interface with an address."""
    links: dict[str, str] = {}
    for index, value in enumerate(expect_list(TOOL, load_json(TOOL, text), "top level")):
        where = f"[{index}]"
        entry = expect_dict(TOOL, value, where)
        name = opt_str(TOOL, entry, "ifname", where)
        if not name:
            fail(TOOL, f"{where}: an interface without 'ifname' (not ip -j link output?)")
        mac = opt_str(TOOL, entry, "address", where)
        permanent = opt_str(TOOL, entry, "permaddr", where)  # a bond member's own MAC
        for address in (permanent, mac):
            if address and address != "00:00:00:00:00:00":
                links.setdefault(address.lower(), name)
    return links


def parse_route_get(text: str) -> str | None:
    """The output interface of `ip -j route get ADDR` (None for an empty answer)."""
    routes = expect_list(TOOL, load_json(TOOL, text), "top level")
    if not routes:
        return None
    first = expect_dict(TOOL, routes[0], "[0]")
    return opt_str(TOOL, first, "dev", "[0]")
