"""The lab read from an inventory, and the QEMU command lines it makes (no processes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from harness.errors import InventoryError
from harness.inventory import load_inventory
from harness.lab.qemu import blkdebug_config, guest_argv, qmp_users
from harness.lab.spec import LabSpec, lab_spec

VIRTUAL = Path(__file__).resolve().parents[2] / "inventory" / "virtual"


def shipped() -> LabSpec:
    return lab_spec(load_inventory(VIRTUAL))


def test_the_shipped_lab_has_three_guests_each_powered_differently() -> None:
    spec = shipped()
    guests = {g.name: g for g in spec.guests}
    assert set(guests) == {"vm-good", "vm-mismatch", "vm-baddisk"}
    assert {g.power.driver for g in spec.guests} == {"ipmi", "redfish", "qemu"}
    assert spec.netns == "vet-lab" and spec.bridge == "vetbr0"
    assert spec.controller_ip == "10.77.0.254" and str(spec.network) == "10.77.0.0/24"
    # Every disk bus the lab offers is on a shipped guest.
    assert {d.bus for g in spec.guests for d in g.disks} == {"nvme", "sata", "scsi", "virtio"}
    bad = guests["vm-baddisk"].disks
    assert [d.serial for d in bad if d.io_errors] == ["VMBAD-DATA0"]
    # vm-mismatch really lacks what its spec promises.
    mismatch = guests["vm-mismatch"]
    expected = {d.serial for d in load_inventory(VIRTUAL, "vm-mismatch")[0].spec.disks}
    assert expected - {d.serial for d in mismatch.disks} == {"VMMIS-SATA0"}
    # Interface names fit the kernel's 15 characters.
    for name in (spec.veth_host, spec.veth_lab, spec.tap(9)):
        assert len(name) <= 15


def test_guest_command_line(tmp_path: Path) -> None:
    spec = shipped()
    guest = next(g for g in spec.guests if g.name == "vm-baddisk")
    argv = guest_argv(spec, guest, 2, "tcg")
    joined = " ".join(argv)
    # Paused (= powered off) and daemonised (its parent exiting is the ready event).
    assert "-S" in argv and "-daemonize" in argv and "-no-shutdown" in argv
    assert "q35,graphics=off" in argv  # SeaBIOS and iPXE print on the serial port
    assert "tcg,tb-size=64" in argv and "qemu64" in argv
    assert f"host=127.0.0.1,port={guest.console_port},server=on,wait=off" in joined
    assert f"mac={guest.mac}" in joined and f"ifname={spec.tap(2)}" in joined
    assert "serial=VMBAD-NVME0" in joined and "virtio-blk-pci" in joined
    assert "file.driver=blkdebug" in joined
    # One QMP socket per user: the lab's own and the power path's.
    assert qmp_users(guest) == ["lab", "power"]
    assert joined.count("-qmp") == 2
    assert str(spec.qmp_socket(guest, "power")).endswith(
        "reports/lab/guests/vm-baddisk/qmp-power.sock")
    assert "password" not in joined and "vet-lab-only" not in joined
    kvm = guest_argv(spec, guest, 2, "kvm")
    assert "kvm" in kvm and "host" in kvm and "qemu64" not in kvm


def test_blkdebug_rules() -> None:
    spec = shipped()
    disk = next(d for g in spec.guests for d in g.disks if d.io_errors)
    text = blkdebug_config(disk)
    assert '[inject-error]' in text and 'event = "read_aio"' in text
    assert 'errno = "5"' in text and 'sector = "2048"' in text


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "virtual"
    shutil.copytree(VIRTUAL, root)
    return root


def _edit(root: Path, host: str, **changes: object) -> None:
    path = root / "hosts.yml"
    data = yaml.safe_load(path.read_text())
    data["all"]["children"]["virtual"]["hosts"][host].update(changes)
    path.write_text(yaml.safe_dump(data))


def _problems(root: Path) -> str:
    with pytest.raises(InventoryError) as exc:
        lab_spec(load_inventory(root), str(root))
    return str(exc.value)


def test_mistakes_are_named(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _edit(root, "vm-good", vet_console="socket://10.0.0.5:7000",
          vet_lab_guest={"memory_mib": 64, "disks": [{"bus": "floppy", "serial": "X"},
                                                     {"bus": "nvme", "serial": "bad serial!"}],
                         "gpus": 1})
    _edit(root, "vm-mismatch", vet_console="socket://127.0.0.1:47013")
    text = _problems(root)
    assert "host vm-good: vet_console 'socket://10.0.0.5:7000'" in text
    assert "vet_lab_guest.memory_mib 64 is not a whole number from 128" in text
    assert "vet_lab_guest.disks[0].bus 'floppy' is not one of nvme, sata, scsi, virtio" in text
    assert "vet_lab_guest.disks[1].serial 'bad serial!'" in text
    assert "vet_lab_guest has unknown keys ['gpus']" in text
    assert "two lab guests share the console port 47013" in text


def test_lab_settings_checked(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    group = root / "group_vars" / "all.yml"
    data = yaml.safe_load(group.read_text())
    data["vet_lab"]["controller_address"] = "10.99.0.1"
    data["vet_lab"]["accel"] = "hvf"
    data["vet_pxe"]["mode"] = "service"
    group.write_text(yaml.safe_dump(data))
    text = _problems(root)
    assert "vet_lab.controller_address '10.99.0.1' must be another address in 10.77.0.0/24" \
        in text
    assert "vet_lab.accel 'hvf' is not one of auto, tcg, kvm" in text
    assert "vet_pxe.mode is 'service'" in text


def test_an_inventory_without_guests_says_so(tmp_path: Path) -> None:
    local = Path(__file__).resolve().parents[2] / "inventory" / "local"
    with pytest.raises(InventoryError, match="no host has vet_lab_guest"):
        lab_spec(load_inventory(local, "localhost"))
