"""`vet_mqtt` in a real Ansible inventory: read, defaulted, and every mistake named."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import InventoryError
from harness.inventory import VET_VARIABLES, load_inventory
from harness.models import MqttConfig
from tests.unit.test_inventory import hosts_yml, vaulted_yaml, with_mac, write


def _load(tmp_path: Path, all_vars: str, vault_pass: str | None = None) -> list[MqttConfig | None]:
    files = {"hosts.yml": hosts_yml("node01", "node02"), "group_vars/all.yml": all_vars,
             "host_vars/node01.yml": with_mac(1), "host_vars/node02.yml": with_mac(2)}
    write(tmp_path / "inv", files)
    password_file = None
    if vault_pass is not None:
        password_file = tmp_path / "pass"
        password_file.write_text(vault_pass + "\n")
    return [h.mqtt for h in load_inventory(tmp_path / "inv", vault_password_file=password_file)]


def test_vet_mqtt_is_known_and_off_by_default(tmp_path: Path) -> None:
    assert "vet_mqtt" in VET_VARIABLES
    assert _load(tmp_path, "ansible_user: root\n") == [None, None]


def test_vet_mqtt_defaults_and_a_vaulted_password(tmp_path: Path) -> None:
    text = ("vet_mqtt:\n  host: mqtt.example.net\n  username: vet\n"
            "  password: '{{ vault_mqtt_password }}'\n"
            + vaulted_yaml("vault_mqtt_password", "br0ker-pw", "vaultpw"))
    first, second = _load(tmp_path, text, vault_pass="vaultpw")
    assert first == second == MqttConfig(host="mqtt.example.net", port=1883, username="vet",
                                         password="br0ker-pw", topic_prefix="vet")
    assert first is not None and "br0ker-pw" not in repr(first)


def test_tls_with_a_ca_file_defaults_to_port_8883(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    [config, _] = _load(tmp_path, f"vet_mqtt: {{host: broker, ca_file: {ca}, "
                                  "topic_prefix: dc1/vet}\n")
    assert config == MqttConfig(host="broker", port=8883, tls=True, ca_file=str(ca),
                                topic_prefix="dc1/vet")


@pytest.mark.parametrize(("text", "expected"), [
    ("vet_mqtt: {port: 1883}",
     "vet_mqtt.host is missing; name the broker, e.g. vet_mqtt: {host: mqtt.example.net"),
    ("vet_mqtt: {host: b, topic_prefix: 'vet/#'}",
     "vet_mqtt.topic_prefix 'vet/#' is not a topic prefix"),
    ("vet_mqtt: {host: b, port: 99999}", "vet_mqtt.port 99999 is out of range"),
    ("vet_mqtt: {host: b, tls: 'yes please'}", "vet_mqtt.tls 'yes please' is not true/false"),
    ("vet_mqtt: {host: b, prot: 1883}", "vet_mqtt has unknown key 'prot' (did you mean 'port'?)"),
    ("vet_mqtt: {host: b, username: u, password: 12345678}",
     "vet_mqtt.password (value not shown) is not text"),
    ("vet_mqtt: {host: b, ca_file: /nonexistent/ca.pem}",
     "vet_mqtt.ca_file /nonexistent/ca.pem does not exist"),
    ("vet_mqtt: mqtt://broker:1883", "vet_mqtt is text 'mqtt://broker:1883'; write a mapping"),
])
def test_mistakes_name_the_key_and_the_fix(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(InventoryError) as caught:
        _load(tmp_path, text + "\n")
    [problem] = caught.value.problems
    assert expected in problem, problem
    assert "hosts node01, node02" in problem and "group_vars/all.yml" in problem
    assert "12345678" not in problem
