"""Fault matrix, bad input (docs/RELIABILITY.md): inventory mistakes not covered by
tests/unit/test_inventory*.py, each loaded by real Ansible. Every one ends in one
InventoryError (a VetError: the operator reads its text, no traceback) that names the
file or host and what to write instead, and never loads silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import InventoryError
from harness.inventory import load_inventory

pytestmark = pytest.mark.faults

MAC = "vet_macs: ['52:54:00:ab:01:01']"

#: mistake -> (hosts.yml text, words the message must hold)
MISTAKES: dict[str, tuple[str, list[str]]] = {
    "an empty file": ("", ["this inventory has no hosts", "hosts.yml"]),
    "binary noise": ("\x00\x01\x02 garbage", ["hosts.yml", "cannot parse",
                                               "control characters"]),
    "tabs for indentation": ("all:\n\thosts:\n\t\tnode01:\n",
                             ["hosts.yml", "Tabs", "line 2"]),
    "hosts as a list": ("all:\n  hosts:\n    - node01\n",
                        ["hosts.yml", 'Invalid "hosts" entry', "requires a dictionary"]),
    "a key written twice": (f"all:\n  hosts:\n    node01:\n      {MAC}\n      {MAC}\n",
                            ["hosts.yml", "duplicate mapping key 'vet_macs'", "line 5"]),
    "vet_spec as text": (f"all:\n  hosts:\n    node01:\n      {MAC}\n      vet_spec: 'cpu: 8'\n",
                         ["host node01", "vet_spec is text", "write a mapping",
                          "hosts.yml:5"]),
    "a port in words": (f"all:\n  hosts:\n    node01:\n      {MAC}\n      ansible_port: ssh\n",
                        ["host node01", "ansible_port 'ssh' is not a whole number",
                         "ansible_port: 22"]),
    "a connection typo": (f"all:\n  hosts:\n    node01:\n      {MAC}\n"
                          "      ansible_connection: sssh\n",
                          ["ansible_connection 'sssh' is not supported", "local, ssh"]),
    "a negative deadline": (f"all:\n  hosts:\n    node01:\n      {MAC}\n"
                            "      vet_ssh_dead_after_s: -1\n",
                            ["vet_ssh_dead_after_s -1 is out of range", "greater than 0"]),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_inventory_mistake_is_one_clear_error(tmp_path: Path, mistake: str) -> None:
    text, words = MISTAKES[mistake]
    (tmp_path / "hosts.yml").write_text(text)
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    message = str(exc.value)
    assert message.startswith(str(tmp_path)), message
    for word in words:
        assert word in message, (word, message)
    assert "Traceback" not in message


def test_a_file_in_utf16_is_named(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_bytes("all:\n  hosts:\n    node01:\n".encode("utf-16"))
    with pytest.raises(InventoryError, match=r"hosts\.yml: Ansible cannot parse this file"):
        load_inventory(tmp_path)


def test_a_duplicate_key_in_group_vars_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text(f"all:\n  hosts:\n    node01:\n      {MAC}\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("vet_hold_ttl_h: 4\nvet_hold_ttl_h: 8\n")
    with pytest.raises(InventoryError) as exc:
        load_inventory(tmp_path)
    message = str(exc.value)
    assert "group_vars/all.yml" in message and "vet_hold_ttl_h" in message, message


def test_the_operators_own_duplicate_key_setting_wins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANSIBLE_DUPLICATE_YAML_DICT_KEY", "ignore")
    (tmp_path / "hosts.yml").write_text(
        f"all:\n  hosts:\n    node01:\n      vet_macs: ['52:54:00:ab:01:09']\n      {MAC}\n")
    (host,) = load_inventory(tmp_path)
    assert list(host.macs) == ["52:54:00:ab:01:01"]
