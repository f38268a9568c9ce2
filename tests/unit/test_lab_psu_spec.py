"""A lab guest's power supplies in the lab spec, the BMC's sensor records and the SMBIOS
structures they become (no processes; tests/integration/test_lab_psu.py reads them with
the real ipmitool and dmidecode)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import yaml

from harness.errors import InventoryError
from harness.inventory import load_inventory
from harness.lab.qemu import guest_argv
from harness.lab.sdr import psu_repository
from harness.lab.smbios import power_supply
from harness.lab.spec import lab_spec
from tests.unit.test_lab_spec import VIRTUAL, _copy, _edit


def test_vm_good_has_two_healthy_psus_and_expects_two() -> None:
    inventory = load_inventory(VIRTUAL)
    spec = lab_spec(inventory)
    guests = {g.name: g for g in spec.guests}
    assert guests["vm-good"].psus == ("ok", "ok")
    assert guests["vm-mismatch"].psus == guests["vm-baddisk"].psus == ()
    assert {h.name: h.spec.psu_count for h in inventory}["vm-good"] == 2
    argv = " ".join(guest_argv(spec, guests["vm-good"], 0, "tcg"))
    assert argv.count("-smbios file=") == 2 and "smbios-psu2.bin" in argv
    assert "-smbios file=" not in " ".join(guest_argv(spec, guests["vm-baddisk"], 2, "tcg"))


@pytest.mark.parametrize(("psu", "expected"), [
    (["ok", "broken"], "vet_lab_guest.psu ['ok', 'broken'] must list 1 to 8 power supplies, "
                       "each one of ok, failed, ac-lost, absent (e.g. psu: [ok, failed])"),
    ("ok", "vet_lab_guest.psu 'ok' must list 1 to 8"),
    ([], "vet_lab_guest.psu [] must list 1 to 8"),
    (["ok"] * 9, "vet_lab_guest.psu ['ok', 'ok', 'ok'"),
])
def test_a_bad_psu_list_is_named(tmp_path: Path, psu: object, expected: str) -> None:
    root = _copy(tmp_path)
    data = yaml.safe_load((root / "hosts.yml").read_text())
    guest = data["all"]["children"]["virtual"]["hosts"]["vm-good"]["vet_lab_guest"]
    _edit(root, "vm-good", vet_lab_guest={**guest, "psu": psu})
    with pytest.raises(InventoryError) as caught:
        lab_spec(load_inventory(root), str(root))
    assert f"host vm-good: {expected}" in str(caught.value)


def test_psus_need_the_ipmi_bmc(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    data = yaml.safe_load((root / "hosts.yml").read_text())
    guest = data["all"]["children"]["virtual"]["hosts"]["vm-mismatch"]["vet_lab_guest"]
    _edit(root, "vm-mismatch", vet_lab_guest={**guest, "psu": ["ok", "failed"]})
    with pytest.raises(InventoryError) as caught:
        lab_spec(load_inventory(root), str(root))
    assert ("host vm-mismatch: vet_lab_guest.psu: the PSU sensors are served by the lab's "
            "IPMI BMC; set vet_power.driver: ipmi or drop psu") in str(caught.value)


def test_sensor_records_follow_the_full_sensor_record_layout() -> None:
    repository = psu_repository(["ok", "failed"])
    first = repository.record(0)
    assert first is not None
    record, following = first
    record_id, version, kind, length = struct.unpack_from("<HBBB", record)
    assert (record_id, version, kind, following) == (1, 0x51, 0x01, 2)
    assert length == len(record) - 5
    assert record[47] & 0x1F == len("PSU1 Status") and record[48:] == b"PSU1 Status"
    last = repository.record(len(repository.sensors))
    assert last is not None and last[1] == 0xFFFF
    assert repository.record(len(repository.sensors) + 1) is None
    status = repository.sensor(0x34)  # PSU2 Status: presence and failure asserted
    assert status is not None and status.reading()[2] == 0b11
    with pytest.raises(ValueError, match="PSU 2 state 'smoking' is not one of"):
        psu_repository(["ok", "smoking"])


def test_smbios_power_supply_structure() -> None:
    blob = power_supply(2, "failed")
    kind, length, handle = struct.unpack_from("<BBH", blob)
    assert (kind, length, handle) == (39, 0x16, 0x2702)
    characteristics = struct.unpack_from("<H", blob, 0x0E)[0]
    assert characteristics >> 7 & 0b111 == 0b101  # critical
    assert characteristics & 0b10  # present
    assert blob[0x16:].split(b"\0")[:2] == [b"Bay 2", b"PSU2"] and blob.endswith(b"\0\0")
    assert not struct.unpack_from("<H", power_supply(1, "absent"), 0x0E)[0] & 0b10
