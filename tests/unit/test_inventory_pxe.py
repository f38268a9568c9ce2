"""`vet_pxe` in the inventory -> Host.pxe, read by real Ansible (harness.inventory)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from harness.errors import InventoryError
from harness.inventory import VET_VARIABLES, load_inventory
from harness.models import PxeConfig

HOSTS = """\
all:
  children:
    rack1:
      hosts:
        node01:
          ansible_host: 10.0.0.21
          vet_macs: ["52:54:00:ab:01:01"]
        node02:
          ansible_host: node02.example
          vet_macs: ["52:54:00:ab:01:02"]
"""
GOOD = """\
vet_pxe:
  server: 10.0.0.1
  interface: eno2
  dhcp_range: "10.0.0.100,10.0.0.199"
"""


def inventory(root: Path, group_vars: str, hosts: str = HOSTS) -> Path:
    (root / "group_vars").mkdir(parents=True)
    (root / "hosts.yml").write_text(hosts)
    (root / "group_vars" / "all.yml").write_text(textwrap.dedent(group_vars))
    return root


def problems_of(root: Path) -> list[str]:
    with pytest.raises(InventoryError) as exc:
        load_inventory(root)
    prefix = f"{root}: hosts node01, node02: "
    return [p.removeprefix(prefix).removeprefix(f"{root}: host node01: ")
            for p in exc.value.problems]


def test_vet_pxe_is_a_vet_variable() -> None:
    assert "vet_pxe" in VET_VARIABLES


def test_defaults(tmp_path: Path) -> None:
    hosts = load_inventory(inventory(tmp_path, GOOD))
    expected = PxeConfig(server="10.0.0.1", interface="eno2",
                         dhcp_range=("10.0.0.100", "10.0.0.199"))
    assert [h.pxe for h in hosts] == [expected, expected]
    assert expected.root == "/srv/vet-pxe" and expected.mode == "service"
    assert expected.http_port == 8080 and expected.ipv6_ra and expected.token_ttl_s == 86400
    assert expected.token_key_file is None and expected.token_key is None


def test_every_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    inventory(tmp_path / "inv", """\
        vet_pxe:
          server: 10.0.0.1
          interface: br-vet
          dhcp_range: [10.0.0.100, 10.0.0.199]
          netmask: 255.255.0.0
          http_port: "8081"
          root: pxe-root
          mode: lab
          ipv6_ra: false
          token_key_file: ~/keys/vet.key
          token_key: "0123456789abcdef0123"
          token_ttl_s: 3600
        """)
    pxe = load_inventory(tmp_path / "inv")[0].pxe
    assert pxe == PxeConfig(
        server="10.0.0.1", interface="br-vet", dhcp_range=("10.0.0.100", "10.0.0.199"),
        netmask="255.255.0.0", http_port=8081, root=str(tmp_path / "pxe-root"), mode="lab",
        ipv6_ra=False, token_key_file=str(tmp_path / "home" / "keys" / "vet.key"),
        token_key="0123456789abcdef0123", token_ttl_s=3600)
    assert "0123456789abcdef0123" not in repr(pxe)
    assert os.path.isabs(pxe.root)


def test_no_vet_pxe_means_no_pxe(tmp_path: Path) -> None:
    assert [h.pxe for h in load_inventory(inventory(tmp_path, "vet_spec: {}\n"))] == [None, None]


def test_required_keys(tmp_path: Path) -> None:
    got = problems_of(inventory(tmp_path, "vet_pxe: {server: 10.0.0.1}\n"))
    assert got == [
        f"vet_pxe.{key} is missing; vet_pxe needs server, interface, dhcp_range, e.g. "
        "vet_pxe: {server: 10.0.0.1, interface: eno2, dhcp_range: '10.0.0.100,10.0.0.199'} "
        "(from group_vars/all.yml:1)"
        for key in ("interface", "dhcp_range")
    ]


@pytest.mark.parametrize(("extra", "expected"), [
    ("ip: 10.0.0.5", "vet_pxe.ip is not a vet_pxe key: a host's fixed DHCP address is its "
                     "ansible_host (e.g. ansible_host: 10.0.0.21)"),
    ("htpp_port: 80", "vet_pxe has unknown key 'htpp_port' (did you mean 'http_port'?); "
                      "allowed keys: server, interface, dhcp_range, netmask, http_port, root, "
                      "mode, ipv6_ra, token_key_file, token_key, token_ttl_s"),
    ("mode: daemon", "vet_pxe.mode 'daemon' is not a PXE mode; write mode: service (systemd "
                     "units on the PXE server) or mode: lab (files only, the virtual lab runs "
                     "them)"),
    ("ipv6_ra: maybe", "vet_pxe.ipv6_ra 'maybe' is not true/false; write ipv6_ra: true"),
    ("http_port: 70000", "vet_pxe.http_port 70000 is out of range; it must be at least 1 and "
                         "at most 65535"),
    ("netmask: 255.0.255.0", "vet_pxe.netmask '255.0.255.0' is not a netmask; write e.g. "
                             "netmask: 255.255.255.0"),
    ("token_ttl_s: 5", "vet_pxe.token_ttl_s 5 is out of range; it must be at least 60"),
    ("root: /srv/my pxe", "vet_pxe.root '/srv/my pxe' contains spaces or commas, which "
                          "dnsmasq.conf cannot hold; choose a plain path, e.g. "
                          "root: /srv/vet-pxe"),
    ("token_key: 12345", "vet_pxe.token_key is not a non-empty text (value not shown); vault "
                         "it: ansible-vault encrypt_string \"$(openssl rand -hex 32)\" "
                         "--name token_key"),
])
def test_bad_values(tmp_path: Path, extra: str, expected: str) -> None:
    got = problems_of(inventory(tmp_path, GOOD + f"  {extra}\n"))
    assert len(got) == 1
    assert got[0].startswith(expected + " (from group_vars/all.yml"), got
    assert "12345" not in got[0] or "token_key" not in extra


@pytest.mark.parametrize(("server", "dhcp_range", "expected"), [
    ("10.0.0.300", "10.0.0.100,10.0.0.199",
     "vet_pxe.server '10.0.0.300' is not an IPv4 address; write e.g. server: 10.0.0.1"),
    ("10.0.0.1", "10.0.0.100",
     "vet_pxe.dhcp_range '10.0.0.100' is not a first and a last address; write dhcp_range: "
     "'10.0.0.100,10.0.0.199' (or a list of the two)"),
    ("10.0.0.1", "10.0.0.199,10.0.0.100",
     "vet_pxe.dhcp_range starts at 10.0.0.199, after its end 10.0.0.100; write the lower "
     "address first"),
    ("10.0.0.1", "10.0.0.100,10.0.1.20",
     "vet_pxe.dhcp_range address 10.0.1.20 is outside the PXE network 10.0.0.0/24 "
     "(vet_pxe.server and vet_pxe.netmask); use addresses of that network"),
    ("10.0.0.150", "10.0.0.100,10.0.0.199",
     "vet_pxe.dhcp_range 10.0.0.100-10.0.0.199 contains the server's own address 10.0.0.150; "
     "dnsmasq could lease it to a host: move the range"),
])
def test_addresses(tmp_path: Path, server: str, dhcp_range: str, expected: str) -> None:
    text = (f"vet_pxe: {{server: '{server}', interface: eno2, "
            f"dhcp_range: '{dhcp_range}'}}\n")
    got = problems_of(inventory(tmp_path, text))
    assert got == [expected + " (from group_vars/all.yml:1)"]


def test_ansible_host_outside_the_pxe_network(tmp_path: Path) -> None:
    hosts = HOSTS.replace("10.0.0.21", "10.9.0.21")
    with pytest.raises(InventoryError) as exc:
        load_inventory(inventory(tmp_path, GOOD, hosts))
    assert exc.value.problems == [
        f"{tmp_path}: host node01: ansible_host 10.9.0.21 is outside the PXE network "
        "10.0.0.0/24 (vet_pxe.server and vet_pxe.netmask); the PXE server leases ansible_host "
        "to the host, so put it in that network (from hosts.yml:6)"]


def test_interface_name(tmp_path: Path) -> None:
    got = problems_of(inventory(tmp_path, GOOD.replace("eno2", "'a very long interface'")))
    assert got == ["vet_pxe.interface 'a very long interface' is not a network interface name "
                   "(at most 15 letters, digits or . _ - : @ +); write e.g. interface: eno2 "
                   "(from group_vars/all.yml:3)"]


def test_not_a_mapping(tmp_path: Path) -> None:
    got = problems_of(inventory(tmp_path, "vet_pxe: 10.0.0.1\n"))
    assert got == ["vet_pxe is text '10.0.0.1'; write a mapping, e.g. vet_pxe: {server: "
                   "10.0.0.1, interface: eno2, dhcp_range: '10.0.0.100,10.0.0.199'} "
                   "(from group_vars/all.yml:1)"]
