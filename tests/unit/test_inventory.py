"""harness.inventory against real Ansible: real inventories, real vault, no mocks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.errors import InventoryError, VetError
from harness.inventory import (
    POWER_DRIVERS,
    VET_VARIABLES,
    check_console_url,
    load_inventory,
    normalize_mac,
)
from harness.models import ExpectedDisk, ExpectedGpu, ExpectedNic, ExpectedSpec, Host

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "inventories"
EXAMPLE = ROOT / "inventory" / "example"
EXAMPLE_VAULT_PASS = ROOT / "inventory" / "example.vault-pass"
ANSIBLE_VAULT = Path(sys.executable).parent / "ansible-vault"



def with_mac(n: int, extra: str = "") -> str:
    """host_vars text: one good MAC (52:54:00:ab:01:0n) plus `extra` (dedented)."""
    return f'vet_macs: ["52:54:00:ab:01:0{n}"]\n' + textwrap.dedent(extra)


def write(root: Path, files: dict[str, str]) -> Path:
    """Create an inventory tree under root from {relative path: dedented text}."""
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    return root


def hosts_yml(*names: str, group: str = "rack1") -> str:
    lines = ["all:", "  children:", f"    {group}:", "      hosts:"]
    lines += [f"        {name}:" for name in names]
    return "\n".join(lines) + "\n"


def problems(exc: pytest.ExceptionInfo[InventoryError]) -> list[str]:
    return exc.value.problems


def only_problem(exc: pytest.ExceptionInfo[InventoryError]) -> str:
    assert len(exc.value.problems) == 1, exc.value.problems
    return exc.value.problems[0]


def vault_encrypt(plaintext: str, password: str) -> str:
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([("default", VaultSecret(password.encode()))])
    return str(vault.encrypt(plaintext).decode())


def vaulted_yaml(key: str, plaintext: str, password: str, indent: int = 0) -> str:
    pad = " " * indent
    body = textwrap.indent(vault_encrypt(plaintext, password), pad + "  ")
    return f"{pad}{key}: !vault |\n{body}\n"


def by_name(hosts: list[Host]) -> dict[str, Host]:
    return {h.name: h for h in hosts}


# --------------------------------------------------------------------------- happy paths


def test_yaml_directory_with_group_and_host_vars() -> None:
    hosts = load_inventory(DATA / "rack_yaml")
    assert [h.name for h in hosts] == ["node01", "node02", "node03"]
    node = by_name(hosts)

    one = node["node01"]
    assert one.connection.kind == "ssh"
    assert one.connection.address == "192.0.2.11"
    assert one.connection.user == "vet"  # from the group's inline vars
    assert one.connection.port == 2201
    assert one.macs == ("52:54:00:ab:01:01", "52:54:00:ab:01:11")  # upper case, dashes
    assert one.console == "socket://127.0.0.1:7001"
    assert one.groups == ("rack1",)
    # group_vars/rack1/power.yml, with its template rendered per host
    assert one.power.driver == "ipmi"
    assert one.power.params == {"address": "node01-bmc.example", "username": "admin",
                                "interface": "lanplus"}
    assert one.power.secrets == {"password": "not-vaulted-in-this-fixture"}
    assert one.spec.cpu.cores == 64 and one.spec.cpu.sockets == 2
    assert one.spec.memory.total_gib == 256.0 and one.spec.memory.tolerance_pct == 5.0
    assert one.spec.psu_count == 2
    assert one.stage_params == {"smart": {}, "cpu": {"duration_s": 600}}  # group_vars/all
    assert one.profile_params == {"quick": {"cpu": {"duration_s": 30}}}

    two = node["node02"]
    assert two.connection.address == "node02"  # no ansible_host: Ansible uses the name
    assert two.groups == ("rack1", "storage")
    assert two.macs == ("52:54:00:ab:01:02",)  # vet_mac (one)
    assert two.console == "/dev/ttyUSB0"
    assert two.power.driver == "redfish"
    assert two.power.params == {"url": "https://node02-bmc.example", "username": "root",
                                "verify_tls": False}
    assert two.power.secrets == {"password": "calvin"}
    # host_vars' vet_spec replaces the group's (Ansible replaces mappings, never merges)
    assert two.spec.cpu.cores is None
    assert two.spec.disks == (
        ExpectedDisk(serial="S4EWNX0N100002", model="Samsung SSD 980", size_gb=1000.2),
        ExpectedDisk(serial="WD-123456"),
    )
    assert two.spec.nics == (ExpectedNic(mac="52:54:00:ab:01:02", speed_mbps=10000),)
    assert two.spec.gpus == (ExpectedGpu(model="NVIDIA L40S", count=2),)
    assert two.spec.bios_version == "1.4.9"
    assert two.stage_params == {"storage": {"fio_runtime_s": 120}}  # group storage wins

    three = node["node03"]
    assert three.console == "serial:///dev/ttyS1?baud=115200"
    assert three.power.driver == "wol"
    assert three.power.params == {"mac": "52:54:00:ab:01:03"}  # defaults to first vet_macs
    assert three.stage_params == {"memory": {"passes": 2}}


def test_ini_file_inventory() -> None:
    hosts = load_inventory(DATA / "rack_ini" / "hosts.ini")
    node = by_name(hosts)
    assert [h.name for h in hosts] == ["alpha", "bravo", "local-runner"]
    assert node["alpha"].macs == ("52:54:00:cd:02:01",)
    assert node["alpha"].console == "rfc2217://ts2.example:7001"
    assert node["bravo"].macs == ("52:54:00:cd:02:02", "52:54:00:cd:02:12")
    assert node["bravo"].connection.port == 2222
    assert node["bravo"].connection.user == "root"
    assert node["bravo"].power.driver == "qemu"
    assert node["bravo"].power.params == {"qmp": "/run/vet/qmp.sock"}
    assert node["bravo"].spec.memory.tolerance_pct == 10.0
    assert node["bravo"].spec.cpu.threads == 8
    # a local host needs no MAC
    local = node["local-runner"]
    assert local.connection.kind == "local" and local.connection.address is None
    assert local.macs == () and local.groups == ("lab",)
    assert local.power.driver == "manual"


def test_example_inventory_loads_with_its_example_vault_password() -> None:
    hosts = load_inventory(EXAMPLE, vault_password_file=EXAMPLE_VAULT_PASS)
    assert [h.name for h in hosts] == ["node01", "node02", "node03"]
    for host in hosts:
        assert host.power.driver == "ipmi"
        assert set(host.power.params) == {"address", "username"}
        assert host.power.secrets == {"password": "example-bmc-password"}
        assert host.console and host.console.startswith("rfc2217://ts1.rack1.example:700")
        assert len(host.spec.disks) == 2 and len(host.macs) == 2
        assert set(host.profile_params) == {"quick", "standard", "burnin"}
    node = by_name(hosts)
    assert node["node03"].groups == ("gpu", "rack1")
    assert node["node03"].spec.gpus == (ExpectedGpu(model="NVIDIA L40S", count=4),)
    assert node["node01"].spec.gpus == ()
    assert node["node02"].power.params["address"] == "10.10.1.102"


def test_example_inventory_without_vault_password_says_how_to_pass_it() -> None:
    with pytest.raises(InventoryError) as exc:
        load_inventory(EXAMPLE)
    message = only_problem(exc)
    assert "hosts node01, node02, node03" in message
    assert "vet_power.password uses the vaulted variable vault_bmc_password" in message
    assert "group_vars/rack1/vault.yml" in message
    assert "--vault-password-file" in message
    assert "example-bmc-password" not in str(exc.value)


def test_local_inventory_loads() -> None:
    # host_vars/localhost.yml may or may not have been drafted on this machine
    hosts = load_inventory(ROOT / "inventory" / "local")
    assert len(hosts) == 1
    local = hosts[0]
    assert local.name == "localhost"
    assert local.connection.kind == "local"
    assert local.groups == ("local",)
    assert local.macs == ()


def test_local_inventory_without_host_vars_has_an_empty_spec(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": (ROOT / "inventory" / "local" / "hosts.yml").read_text()})
    [local] = load_inventory(tmp_path)
    assert local.spec == ExpectedSpec()
    assert local.power.driver == "manual"


def test_local_example_host_vars_is_valid(tmp_path: Path) -> None:
    example = ROOT / "inventory" / "local" / "host_vars" / "localhost.yml.example"
    write(tmp_path, {"hosts.yml": (ROOT / "inventory" / "local" / "hosts.yml").read_text(),
                     "host_vars/localhost.yml": example.read_text()})
    [local] = load_inventory(tmp_path)
    assert local.spec.cpu.threads == 32
    assert local.spec.disks[0].serial == "S6B0NL0T123456"


def test_templates_use_ansible_variables(tmp_path: Path) -> None:
    write(tmp_path, {
        "hosts.yml": hosts_yml("node01"),
        "group_vars/rack1.yml": """\
            bmc_domain: bmc.example
            vet_power:
              driver: ipmi
              address: "{{ inventory_hostname }}.{{ bmc_domain }}"
              username: "{{ 'ad' ~ 'min' }}"
              password: pw
              port: "{{ 600 + 23 }}"
        """,
        "host_vars/node01.yml": with_mac(1),
    })
    [host] = load_inventory(tmp_path)
    assert host.power.params == {"address": "node01.bmc.example", "username": "admin",
                                 "port": 623}


def test_secret_keys_go_to_secrets_never_params(tmp_path: Path) -> None:
    write(tmp_path, {
        "hosts.yml": hosts_yml("node01"),
        "host_vars/node01.yml": with_mac(1, """\
            vet_power:
              driver: ipmi
              address: 10.0.0.1
              username: admin
              password: hunter2
              kg_key: "0102030405"
        """),
    })
    [host] = load_inventory(tmp_path)
    assert host.power.secrets == {"password": "hunter2", "kg_key": "0102030405"}
    assert "hunter2" not in repr(host) and "0102030405" not in repr(host)
    # a caller may widen the set
    [host] = load_inventory(tmp_path, secret_keys=frozenset({"password", "key", "username"}))
    assert host.power.secrets == {"password": "hunter2", "kg_key": "0102030405",
                                  "username": "admin"}


def test_empty_vet_spec_and_null_sections_are_accepted(tmp_path: Path) -> None:
    write(tmp_path, {
        "hosts.yml": hosts_yml("node01"),
        "host_vars/node01.yml": with_mac(1, """\
            vet_spec:
              cpu:
              disks: []
            vet_stages:
              smart:
        """),
    })
    [host] = load_inventory(tmp_path)
    assert host.spec.cpu.cores is None and host.spec.disks == ()
    assert host.stage_params == {"smart": {}}


def test_comma_separated_macs_string_and_dash_separators(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.ini": "node01 vet_macs=52-54-00-AB-01-01,52:54:00:ab:01:11\n"})
    [host] = load_inventory(tmp_path / "hosts.ini")
    assert host.macs == ("52:54:00:ab:01:01", "52:54:00:ab:01:11")


def test_implicit_localhost_is_never_a_host(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"),
                     "host_vars/node01.yml": with_mac(1)})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path, pattern="localhost")
    assert "matches no host" in only_problem(exc)


def test_load_of_three_hosts_is_fast() -> None:
    load_inventory(EXAMPLE, vault_password_file=EXAMPLE_VAULT_PASS)  # imports Ansible
    start = time.perf_counter()
    load_inventory(EXAMPLE, vault_password_file=EXAMPLE_VAULT_PASS)
    assert time.perf_counter() - start < 2.0


# --------------------------------------------------------------------------- patterns


@pytest.mark.parametrize(("pattern", "expected"), [
    ("node0*", ["node01", "node02", "node03"]),
    ("rack1:!node03", ["node01", "node02"]),
    ("storage", ["node02"]),
    ("node03,node01", ["node01", "node03"]),
    ("rack1:&storage", ["node02"]),
    ("~node0[12]", ["node01", "node02"]),
])
def test_patterns_select_like_limit(pattern: str, expected: list[str]) -> None:
    assert [h.name for h in load_inventory(DATA / "rack_yaml", pattern=pattern)] == expected


def test_pattern_matching_nothing_lists_hosts_and_groups(capfd: pytest.CaptureFixture[str]
                                                         ) -> None:
    with pytest.raises(InventoryError) as exc:
        load_inventory(DATA / "rack_yaml", pattern="node9*")
    assert only_problem(exc) == (
        f"{DATA / 'rack_yaml'}: host pattern 'node9*' matches no host; hosts: node01, "
        "node02, node03; groups: rack1, storage")
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # Ansible's "Could not match supplied host pattern" is kept


def test_limited_run_ignores_other_hosts_mistakes_but_not_their_macs(tmp_path: Path) -> None:
    write(tmp_path, {
        "hosts.yml": hosts_yml("node01", "node02", "node03"),
        "host_vars/node01.yml": with_mac(1),
        "host_vars/node02.yml": 'vet_macs: ["not-a-mac"]\n',
        "host_vars/node03.yml": with_mac(1),
    })
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path, pattern="node01:node02")
    assert len(problems(exc)) == 2  # node02's bad MAC and node01/node03 sharing one
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path, pattern="node01")
    assert only_problem(exc) == (
        f"{tmp_path}: hosts node01 and node03 have the same MAC 52:54:00:ab:01:01 in "
        "vet_macs; a MAC belongs to one host, fix the copy")


# --------------------------------------------------------------------------- vault


def vault_tree(tmp_path: Path, password: str) -> Path:
    return write(tmp_path / "inv", {
        "hosts.yml": hosts_yml("node01"),
        "host_vars/node01.yml": with_mac(1) + textwrap.dedent("""\
            vet_power:
              driver: ipmi
              address: 10.0.0.1
              username: admin
        """) + vaulted_yaml("password", "s3cret-bmc", password, indent=2),
    })


def test_inline_vault_value_is_decrypted(tmp_path: Path) -> None:
    inventory = vault_tree(tmp_path, "pw-one")
    (tmp_path / "pass").write_text("pw-one\n")
    [host] = load_inventory(inventory, vault_password_file=tmp_path / "pass")
    assert host.power.secrets == {"password": "s3cret-bmc"}


def test_two_loads_with_different_vault_passwords_in_one_process(tmp_path: Path) -> None:
    first = vault_tree(tmp_path / "a", "pw-a")
    second = vault_tree(tmp_path / "b", "pw-b")
    (tmp_path / "pa").write_text("pw-a\n")
    (tmp_path / "pb").write_text("pw-b\n")
    assert load_inventory(first, vault_password_file=tmp_path / "pa")[0].power.secrets
    assert load_inventory(second, vault_password_file=tmp_path / "pb")[0].power.secrets


def test_vaulted_value_without_password(tmp_path: Path) -> None:
    inventory = vault_tree(tmp_path, "pw-one")
    with pytest.raises(InventoryError) as exc:
        load_inventory(inventory)
    assert only_problem(exc) == (
        f"{inventory}: host node01: vet_power.password is vaulted (host_vars/node01.yml:6) "
        "but no vault password was given; pass --vault-password-file FILE (or set "
        "ANSIBLE_VAULT_PASSWORD_FILE)")


def test_vaulted_value_with_wrong_password(tmp_path: Path) -> None:
    inventory = vault_tree(tmp_path, "pw-one")
    (tmp_path / "wrong").write_text("not-it\n")
    with pytest.raises(InventoryError) as exc:
        load_inventory(inventory, vault_password_file=tmp_path / "wrong")
    message = only_problem(exc)
    assert message == (
        f"{inventory}: host node01: vet_power.password is vaulted (host_vars/node01.yml:6) "
        f"but the vault password from {tmp_path / 'wrong'} does not decrypt it; pass the "
        "right file with --vault-password-file FILE")
    assert "s3cret" not in message


def test_vault_password_file_from_environment(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = vault_tree(tmp_path, "pw-env")
    (tmp_path / "pass").write_text("pw-env\n")
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(tmp_path / "pass"))
    assert load_inventory(inventory)[0].power.secrets == {"password": "s3cret-bmc"}


def test_missing_vault_password_file(tmp_path: Path) -> None:
    inventory = vault_tree(tmp_path, "pw")
    with pytest.raises(InventoryError) as exc:
        load_inventory(inventory, vault_password_file=tmp_path / "nope")
    assert only_problem(exc) == (
        f"{inventory}: vault password file {tmp_path / 'nope'} does not exist or is not a "
        "file; pass --vault-password-file with the file that holds the vault password")


def test_whole_vars_file_encrypted_with_the_ansible_vault_cli(tmp_path: Path) -> None:
    inventory = write(tmp_path / "inv", {
        "hosts.yml": hosts_yml("node01"),
        "host_vars/node01/macs.yml": with_mac(1),
        "host_vars/node01/vault.yml": "vault_bmc_password: from-a-vaulted-file\n",
        "group_vars/rack1.yml": """\
            vet_power: {driver: ipmi, address: 10.0.0.1, username: admin,
                        password: "{{ vault_bmc_password }}"}
        """,
    })
    (tmp_path / "pass").write_text("cli-pw\n")
    subprocess.run([str(ANSIBLE_VAULT), "encrypt", "--vault-password-file",
                    str(tmp_path / "pass"), str(inventory / "host_vars/node01/vault.yml")],
                   check=True, capture_output=True)
    assert (inventory / "host_vars/node01/vault.yml").read_text().startswith("$ANSIBLE_VAULT")
    [host] = load_inventory(inventory, vault_password_file=tmp_path / "pass")
    assert host.power.secrets == {"password": "from-a-vaulted-file"}
    with pytest.raises(InventoryError) as exc:
        load_inventory(inventory)
    assert only_problem(exc) == (
        f"{inventory}: host node01: host_vars/node01/vault.yml is vault-encrypted but no "
        "vault password was given; pass --vault-password-file FILE (or set "
        "ANSIBLE_VAULT_PASSWORD_FILE)")


def test_vaulted_variable_referenced_from_group_vars_names_it(tmp_path: Path) -> None:
    inventory = write(tmp_path / "inv", {
        "hosts.yml": hosts_yml("node01"),
        "group_vars/rack1/vars.yml": """\
            vet_power: {driver: ipmi, address: 10.0.0.1, username: admin,
                        password: "{{ vault_bmc_password }}"}
        """,
        "group_vars/rack1/vault.yml": vaulted_yaml("vault_bmc_password", "x", "pw"),
        "host_vars/node01.yml": with_mac(1),
    })
    with pytest.raises(InventoryError) as exc:
        load_inventory(inventory)
    assert only_problem(exc).startswith(
        f"{inventory}: host node01: vet_power.password uses the vaulted variable "
        "vault_bmc_password (group_vars/rack1/vault.yml:1) but no vault password was given")


# --------------------------------------------------------------------------- errors


def test_missing_inventory_path(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path / "rack9")
    assert only_problem(exc) == (
        f"{tmp_path / 'rack9'}: no such inventory file or directory; pass --inventory with "
        "an Ansible inventory directory (like inventory/example) or file")
    assert isinstance(exc.value, VetError)


def test_unparseable_yaml_file_names_file_and_line(tmp_path: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, {"hosts.yml": """\
        all:
          hosts:
            node01:
              vet_macs: [52:54:00:ab:01:01
          bad: : x
    """})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    message = only_problem(exc)
    assert message.startswith(f"{tmp_path}: hosts.yml: Ansible cannot parse this file as an "
                              "inventory: YAML parsing failed")
    assert "(line 5, column" in message and "[yaml plugin]" in message
    assert "move it out of the inventory" in message
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_unparseable_ini_file(tmp_path: Path) -> None:
    write(tmp_path, {"hosts": "[rack1\nnode01 vet_mac=52:54:00:ab:01:01\n"})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path / "hosts")
    message = only_problem(exc)
    assert message.startswith(f"{tmp_path / 'hosts'}: Ansible cannot parse this file as an "
                              "inventory: ")
    assert "[ini plugin]" in message


def test_same_broken_inventory_reports_twice_in_one_process(tmp_path: Path) -> None:
    # Ansible deduplicates warnings per process; the parse detail must survive that
    write(tmp_path, {"hosts.yml": "all:\n  hosts: [\n"})
    messages = []
    for _ in range(2):
        with pytest.raises(InventoryError) as exc:
            load_inventory(tmp_path)
        messages.append(only_problem(exc))
    assert messages[0] == messages[1]
    assert "YAML parsing failed" in messages[0]


def test_unreadable_host_vars_file_names_it(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01", "node02"),
                     "group_vars/rack1.yml": "vet_spec:\n  cpu: {cores: 8\n  bad: : x\n"})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert only_problem(exc).startswith(
        f"{tmp_path}: hosts node01, node02: Ansible cannot read its variables from "
        "group_vars/rack1.yml:3")


def test_inventory_without_hosts(tmp_path: Path) -> None:
    write(tmp_path, {"group_vars/all.yml": "vet_stages: {}\n"})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert "this inventory has no hosts" in only_problem(exc)


def test_missing_mac(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01")})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert only_problem(exc) == (
        f"{tmp_path}: host node01: has no MAC address; set vet_macs: ['52:54:00:ab:01:02'] "
        "(every host that is not ansible_connection: local needs one: the PXE server only "
        "boots listed MACs)")


def test_malformed_mac(tmp_path: Path) -> None:
    write(tmp_path, {
        "hosts.yml": hosts_yml("node07"),
        "host_vars/node07.yml": 'vet_macs: ["52:54:00:ab:01:01", "52:54:00:zz:01:02"]\n',
    })
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert only_problem(exc) == (
        f"{tmp_path}: host node07: vet_macs[1] '52:54:00:zz:01:02' is not a MAC address; "
        "write six hex pairs like 52:54:00:ab:01:02 (from host_vars/node07.yml:1)")


def test_unquoted_all_digit_mac_read_as_base_60_number(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"),
                     "host_vars/node01.yml": "vet_macs:\n  - 52:54:00:12:34:56\n"})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    message = only_problem(exc)
    assert "vet_macs[0] was read as the number 41135085296 because it is not quoted" in message
    assert "quote it: '52:54:00:12:34:56'" in message


def test_multicast_mac(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"),
                     "host_vars/node01.yml": "vet_mac: '01:00:5e:00:00:01'\n"})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert "vet_mac '01:00:5e:00:00:01' is a multicast address" in only_problem(exc)


def test_same_mac_on_two_hosts_names_both(tmp_path: Path) -> None:
    write(tmp_path, {
        "hosts.yml": hosts_yml("node01", "node02"),
        "host_vars/node01.yml": 'vet_macs: ["52:54:00:ab:01:01"]\n',
        "host_vars/node02.yml": 'vet_macs: ["52-54-00-AB-01-01"]\n',
    })
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert only_problem(exc) == (
        f"{tmp_path}: hosts node01 and node02 have the same MAC 52:54:00:ab:01:01 in "
        "vet_macs; a MAC belongs to one host, fix the copy")


def test_both_vet_mac_and_vet_macs(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"), "host_vars/node01.yml":
                     'vet_mac: "52:54:00:ab:01:01"\nvet_macs: ["52:54:00:ab:01:02"]\n'})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert "both vet_macs and vet_mac are set; keep one" in only_problem(exc)


def test_unknown_power_driver_lists_known_ones(tmp_path: Path) -> None:
    write(tmp_path, {
        "hosts.yml": hosts_yml("node01"),
        "host_vars/node01.yml": with_mac(1, "vet_power: {driver: ipmitool}\n"),
    })
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert only_problem(exc) == (
        f"{tmp_path}: host node01: vet_power.driver 'ipmitool' is not a known power driver "
        "(did you mean 'ipmi'?); use one of: ipmi, manual, qemu, redfish, wol "
        "(from host_vars/node01.yml:2)")


@pytest.mark.parametrize(("driver", "power", "missing", "needs"), [
    ("ipmi", "{driver: ipmi, address: 10.0.0.9}", ["username", "password"],
     "address, username, password"),
    ("redfish", "{driver: redfish, username: u, password: p}", ["url"],
     "url, username, password"),
    ("qemu", "{driver: qemu}", ["qmp"], "qmp"),
])
def test_missing_driver_params(tmp_path: Path, driver: str, power: str, missing: list[str],
                               needs: str) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"),
                     "host_vars/node01.yml": with_mac(1, f"vet_power: {power}\n")})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert problems(exc) == [
        f"{tmp_path}: host node01: vet_power.{key} is missing; the {driver} driver needs "
        f"{needs} (from host_vars/node01.yml:2)" for key in missing]


def test_wol_without_any_mac(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("pc"), "host_vars/pc.yml":
                     "ansible_connection: local\nvet_power: {driver: wol}\n"})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert "vet_power.mac is missing; the wol driver needs mac (or give the host vet_macs)" in (
        only_problem(exc))


def test_unknown_power_param_and_bad_power_values(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"), "host_vars/node01.yml":
                     with_mac(1, """\
                     vet_power:
                       driver: redfish
                       url: bmc.example
                       username: root
                       password: 1234
                       verify_tsl: false
                     """)})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    text = "\n".join(problems(exc))
    assert ("vet_power has unknown key 'verify_tsl' for the redfish driver (did you mean "
            "'verify_tls'?); it takes: url, username, password, system_id, verify_tls, "
            "timeout_s") in text
    assert "vet_power.url 'bmc.example' is not an http(s) URL" in text
    assert "vet_power.password is a number; a secret must be text: quote it" in text
    assert "1234" not in text


@pytest.mark.parametrize("console", [
    "socket://ts1.example", "rfc2217://:7001", "telnet://ts1:23", "/dev/../etc/passwd",
    "ttyS0", "serial://dev/ttyS0", "serial:///dev/ttyS0?baud=fast", "socket://ts1:99999",
])
def test_malformed_console_url(tmp_path: Path, console: str) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"), "host_vars/node01.yml":
                     with_mac(1, f"vet_console: '{console}'\n")})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    message = only_problem(exc)
    assert message.startswith(f"{tmp_path}: host node01: vet_console '{console}' ")
    assert message.endswith(
        "; write one of socket://HOST:PORT, rfc2217://HOST:PORT, a device path like "
        "/dev/ttyS0 or /dev/ttyUSB0, or serial:///dev/ttyS1?baud=115200 "
        "(from host_vars/node01.yml:2)")


@pytest.mark.parametrize("console", [
    "socket://127.0.0.1:7001", "rfc2217://ts1.rack1.example:7001?logging=debug",
    "/dev/ttyS0", "/dev/ttyUSB0", "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0",
    "serial:///dev/ttyS1?baud=115200", "serial:///dev/ttyS1", "socket://[::1]:7001",
])
def test_valid_console_urls(console: str) -> None:
    assert check_console_url(console) is None


def test_expected_disk_without_serial(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"), "host_vars/node01.yml":
                     with_mac(1, """\
                     vet_spec:
                       disks:
                         - {serial: S1, model: X}
                         - {model: "Samsung SSD 980", size_gb: 1000}
                     """)})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert only_problem(exc) == (
        f"{tmp_path}: host node01: vet_spec.disks[1] has no serial; every expected disk needs "
        "its serial (the destructive stages only touch disks whose serial is listed), e.g. "
        "serial: 'S4EWNX0N123456' (from host_vars/node01.yml:5)")


def test_numeric_disk_serial_must_be_quoted(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"), "host_vars/node01.yml":
                     with_mac(1, "vet_spec: {disks: [{serial: 0012345}]}\n")})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert "vet_spec.disks[0].serial was read as the number" in only_problem(exc)


def test_same_disk_serial_on_two_hosts(tmp_path: Path) -> None:
    write(tmp_path, {
        "hosts.yml": hosts_yml("node01", "node02"),
        "group_vars/rack1.yml": "vet_spec: {disks: [{serial: SAME1}]}\n",
        "host_vars/node01.yml": with_mac(1),
        "host_vars/node02.yml": with_mac(2),
    })
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert only_problem(exc) == (
        f"{tmp_path}: hosts node01 and node02 both expect disk serial 'SAME1' in "
        "vet_spec.disks; a disk is in one host, fix the copy")


def test_unknown_vet_spec_key_names_allowed_ones(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"), "host_vars/node01.yml":
                     with_mac(1, "vet_spec:\n  cpu: {cores: 8, thread: 16}\n"
                                 "  memroy: {total_gib: 8}\n")})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert problems(exc) == [
        f"{tmp_path}: host node01: vet_spec has unknown key 'memroy' (did you mean 'memory'?); "
        "allowed keys: cpu, memory, disks, nics, gpus, psu_count, bios_version, bmc_version "
        "(from host_vars/node01.yml:4)",
        f"{tmp_path}: host node01: vet_spec.cpu has unknown key 'thread' (did you mean "
        "'threads'?); allowed keys: model, sockets, cores, threads "
        "(from host_vars/node01.yml:3)",
    ]


def test_bad_types(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"), "host_vars/node01.yml":
                     with_mac(1, """\
                     ansible_port: ssh
                     vet_spec:
                       cpu: {cores: many, sockets: 0}
                       memory: {total_gib: lots, tolerance_pct: 150}
                       disks: {serial: S1}
                       nics: [{mac: "52:54:00:ab:01:01", speed_mbps: fast}]
                       gpus: [{model: L40S, count: true}]
                       psu_count: -1
                       bios_version: 1.20
                     """)})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    got = [p.removeprefix(f"{tmp_path}: host node01: ") for p in problems(exc)]
    assert got == [
        "ansible_port 'ssh' is not a whole number; write e.g. ansible_port: 22 "
        "(from host_vars/node01.yml:2)",
        "vet_spec.psu_count -1 is out of range; it must be at least 0 "
        "(from host_vars/node01.yml:9)",
        "vet_spec.bios_version was read as the number 1.2, which may have lost digits; "
        "quote it: bios_version: '2.19.1' (from host_vars/node01.yml:10)",
        "vet_spec.cpu.sockets 0 is out of range; it must be at least 1 "
        "(from host_vars/node01.yml:4)",
        "vet_spec.cpu.cores 'many' is not a whole number; write e.g. cores: 16 "
        "(from host_vars/node01.yml:4)",
        "vet_spec.memory.total_gib 'lots' is not a number; write e.g. total_gib: 256 "
        "(from host_vars/node01.yml:5)",
        "vet_spec.memory.tolerance_pct 150 is out of range; it must be at least 0 and at "
        "most 100 (from host_vars/node01.yml:5)",
        "vet_spec.disks is a mapping; write a list, e.g. disks: [{serial: 'S4EWNX0N123456', "
        "model: 'Samsung SSD 980', size_gb: 1000}] (from host_vars/node01.yml:6)",
        "vet_spec.nics[0].speed_mbps 'fast' is not a whole number; write e.g. "
        "speed_mbps: 25000 (from host_vars/node01.yml:7)",
        "vet_spec.gpus[0].count true is not a whole number; write e.g. count: 8 "
        "(from host_vars/node01.yml:8)",
    ]


def test_stage_and_profile_names(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"), "host_vars/node01.yml":
                     with_mac(1, """\
                     vet_stages:
                       stroage: {}
                       cpu: 600
                     vet_profiles:
                       quick:
                         gpus: {}
                     """)})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    got = [p.removeprefix(f"{tmp_path}: host node01: ") for p in problems(exc)]
    stages = "inventory, spec, smart, cpu, memory, storage, network, gpu, psu"
    assert got == [
        f"vet_stages names unknown stage 'stroage' (did you mean 'storage'?); stages are: "
        f"{stages} (from host_vars/node01.yml:3)",
        "vet_stages.cpu is a number 600; write a mapping, e.g. cpu: {duration_s: 600} "
        "(from host_vars/node01.yml:4)",
        f"vet_profiles.quick names unknown stage 'gpus' (did you mean 'gpu'?); stages are: "
        f"{stages} (from host_vars/node01.yml:7)",
    ]


def test_unknown_vet_variable_and_connection(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"), "host_vars/node01.yml":
                     with_mac(1, "vet_specs: {}\nansible_connection: docker\n")})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    got = [p.removeprefix(f"{tmp_path}: host node01: ") for p in problems(exc)]
    assert got == [
        "vet_specs is not a vet variable (did you mean 'vet_spec'?); vet reads: "
        f"{', '.join(VET_VARIABLES)} (from host_vars/node01.yml:2)",
        "ansible_connection 'docker' is not supported; use one of: local, ssh "
        "(from host_vars/node01.yml:3)",
    ]


def test_undefined_template_variable(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"), "host_vars/node01.yml":
                     with_mac(1) + 'vet_console: "socket://{{ ts_host }}:7001"\n'})
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    message = only_problem(exc)
    assert message.startswith(f"{tmp_path}: host node01: vet_console cannot be rendered by "
                              "Ansible: ")
    assert "ts_host" in message
    assert message.endswith("fix the template or define the variable it uses "
                            "(from host_vars/node01.yml:2)")


def test_group_vars_mistake_is_one_line_naming_every_host(tmp_path: Path) -> None:
    write(tmp_path, {
        "hosts.yml": hosts_yml("node01", "node02", "node03"),
        "group_vars/rack1.yml": "vet_power: {driver: redfsh}\n",
        **{f"host_vars/node0{n}.yml": with_mac(n) for n in (1, 2, 3)},
    })
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert only_problem(exc).startswith(
        f"{tmp_path}: hosts node01, node02, node03: vet_power.driver 'redfsh' is not a known "
        "power driver (did you mean 'redfish'?)")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, {
        "hosts.yml": hosts_yml("node01", "node02"),
        "host_vars/node01.yml": 'vet_macs: ["zz"]\nvet_console: "bogus"\n',
        "host_vars/node02.yml": "vet_power: {driver: nope}\nvet_spec: {cpu: {cores: x}}\n",
    })
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    assert len(problems(exc)) == 5  # incl. node02's missing MAC
    assert str(exc.value) == "\n".join(problems(exc))
    assert [p.split(": ")[1] for p in problems(exc)] == [
        "host node01", "host node01", "host node02", "host node02", "host node02"]


def test_ansible_prints_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node-01"),  # '-' in no group name is fine
                     "host_vars/node-01.yml": with_mac(1),
                     "host_vars/README": "not a vars file\n"})
    load_inventory(tmp_path)
    with pytest.raises(InventoryError):
        load_inventory(tmp_path, pattern="nothing-here")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_host_vars_created_after_a_first_load_are_seen(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01")})
    with pytest.raises(InventoryError):
        load_inventory(tmp_path)  # no MAC yet; Ansible caches "no host_vars dir here"
    write(tmp_path, {"host_vars/node01.yml": with_mac(1)})
    assert load_inventory(tmp_path)[0].macs == ("52:54:00:ab:01:01",)


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(("raw", "expected"), [
    ("52:54:00:AB:01:02", "52:54:00:ab:01:02"),
    ("52-54-00-ab-01-02", "52:54:00:ab:01:02"),
    (" 52:54:00:ab:01:02 ", "52:54:00:ab:01:02"),
])
def test_normalize_mac(raw: str, expected: str) -> None:
    assert normalize_mac(raw) == expected


@pytest.mark.parametrize("raw", ["52:54:00:ab:01", "52:54-00:ab:01:02", "5254.00ab.0102", ""])
def test_normalize_mac_rejects(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_mac(raw)


def test_power_driver_table_matches_docs() -> None:
    docs = (ROOT / "docs" / "INVENTORY.md").read_text()
    for driver, rule in POWER_DRIVERS.items():
        assert f"`{driver}`" in docs
        for key in rule.allowed:
            assert f"`{key}`" in docs, (driver, key)


# --------------------------------------------------------------------------- ssh and console


def test_ssh_key_pin_and_console_login_are_read(tmp_path: Path) -> None:
    pin = "SHA256:" + "A" * 43
    write(tmp_path, {"hosts.yml": hosts_yml("node01"), "host_vars/node01.yml": f"""
vet_macs: ["52:54:00:00:00:01"]
ansible_ssh_private_key_file: /root/.ssh/vet_ed25519
vet_ssh_host_key: "{pin}"
vet_console: socket://127.0.0.1:4555
vet_console_login: {{user: admin, password: s3cret-console}}
"""})
    [host] = load_inventory(tmp_path)
    assert host.connection.key_file == "/root/.ssh/vet_ed25519"
    assert host.connection.host_key == pin
    assert host.console_login.user == "admin"
    assert host.console_login.password == "s3cret-console"
    assert "s3cret-console" not in repr(host)


def test_malformed_pin_and_non_text_password_are_errors_without_the_secret(
    tmp_path: Path,
) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01"), "host_vars/node01.yml": """
vet_macs: ["52:54:00:00:00:01"]
vet_ssh_host_key: "MD5:ab:cd"
vet_console_login: {user: root, password: 123456.75, shell: bash}
"""})
    with pytest.raises(InventoryError) as err:
        load_inventory(tmp_path)
    text = str(err.value)
    assert "vet_ssh_host_key 'MD5:ab:cd' is not an SSH fingerprint" in text
    assert "vet_console_login.password is not text (value not shown)" in text
    assert "123456" not in text
    assert "shell" in text  # unknown key named


def test_ssh_dead_after(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": hosts_yml("node01", "node02"),
                     "host_vars/node01.yml": with_mac(1, "vet_ssh_dead_after_s: 30\n"),
                     "host_vars/node02.yml": with_mac(2)})
    hosts = {h.name: h for h in load_inventory(tmp_path)}
    assert hosts["node01"].connection.dead_after_s == 30.0
    assert hosts["node02"].connection.dead_after_s == 5.0
    write(tmp_path, {"host_vars/node02.yml": with_mac(2, "vet_ssh_dead_after_s: never\n")})
    with pytest.raises(InventoryError, match="vet_ssh_dead_after_s 'never' is not a number"):
        load_inventory(tmp_path)
