"""The lab guest's power supplies, read the way vet reads a real server's: the real ipmitool
over lanplus against the lab BMC (harness.lab.bmc with --psu, over the QMP socket of a paused
QEMU: no boot), the psu stage judging it in-process, and the guest's SMBIOS type 39 records
as SeaBIOS lays them out in the guest's memory, read by the real dmidecode."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.collect import RawInventory, merge
from harness.console.local import LocalChannel
from harness.host import HostUnderTest, RunContext
from harness.inventory import load_inventory
from harness.lab.qemu import guest_argv
from harness.lab.smbios import write_power_supplies
from harness.lab.spec import lab_spec
from harness.models import Connection, ExpectedSpec, Host, PowerConfig
from harness.probes.dmidecode import parse_dmidecode
from harness.probes.ipmitool import parse_ipmitool
from harness.profiles import effective_params
from harness.spec import compare
from harness.store import Store
from tests.fixtures.lab_bmc import RunningBmc, start_bmc
from tests.fixtures.qemu_guest import QemuGuest, start_guest
from tests.helpers import gone, load_suite

PASSWORD = "lab-psu-pass-7f3a"
VIRTUAL = Path(__file__).resolve().parents[2] / "inventory" / "virtual"
TIMEOUT = 60

pytestmark = pytest.mark.skipif(shutil.which("ipmitool") is None, reason="needs ipmitool")


@pytest.fixture(scope="module")
def guest() -> Iterator[QemuGuest]:
    with start_guest() as started:
        yield started


@contextlib.contextmanager
def lab_bmc(guest: QemuGuest, tmp_path: Path, *psus: str) -> Iterator[RunningBmc]:
    password_file = tmp_path / "bmc.pass"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    states = [arg for state in psus for arg in ("--psu", state)]
    with start_bmc("harness.lab.bmc",
                   ["--name", "vm-psu", "--qmp", str(guest.qmp_bmc), "--address", "127.0.0.1",
                    "--port", "0", "--username", "admin", "--password-file",
                    str(password_file), *states], tmp_path / "bmc.log") as running:
        yield running


def ipmitool(bmc: RunningBmc, *command: str) -> str:
    """The real ipmitool; 3 s a request and 3 retries, as a loaded machine (lab guests
    booting beside this test) can keep the BMC from answering within ipmitool's 1 s."""
    done = subprocess.run(["ipmitool", "-I", "lanplus", "-H", bmc.address, "-p", str(bmc.port),
                           "-U", "admin", "-E", "-N", "3", "-R", "3", *command],
                          env={**os.environ, "IPMI_PASSWORD": PASSWORD}, capture_output=True,
                          text=True, timeout=TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ipmitool_reads_the_psu_sensors_of_the_lab_bmc(guest: QemuGuest,
                                                      tmp_path: Path) -> None:
    with lab_bmc(guest, tmp_path, "ok", "failed") as bmc:
        elist = parse_ipmitool(ipmitool(bmc, "sdr", "elist"))
        sensor = parse_ipmitool(ipmitool(bmc, "sensor"))
    by_name = {s.name: s for s in elist.sensors}
    assert elist.format == "sdr elist"
    assert list(by_name) == ["PSU1 Status", "PSU1 Input Power", "PSU1 Input Volt",
                             "PSU2 Status", "PSU2 Input Power", "PSU2 Input Volt",
                             "PS Redundancy"]
    assert by_name["PSU1 Status"].conditions == ("present",)
    assert by_name["PSU1 Status"].entity == "10.1"
    assert by_name["PSU2 Status"].conditions == ("present", "failed")
    assert by_name["PS Redundancy"].conditions == ("redundancy-lost",)
    assert (by_name["PSU1 Input Power"].reading, by_name["PSU1 Input Power"].unit) == (
        120.0, "Watts")
    assert by_name["PSU2 Input Power"].reading == 0.0
    assert (by_name["PSU1 Input Volt"].reading, by_name["PSU1 Input Volt"].status) == (
        230.0, "ok")
    # `ipmitool sensor`: the same sensors, discrete ones as raw state bits, with thresholds.
    table = {s.name: s for s in sensor.sensors}
    assert sensor.format == "sensor" and list(table) == list(by_name)
    assert table["PSU2 Status"].states == ("Presence detected", "Failure detected")
    assert table["PS Redundancy"].states == ("Redundancy Lost",)
    assert table["PSU1 Input Volt"].thresholds["lcr"] == 180.0
    assert table["PSU1 Input Volt"].thresholds["ucr"] == 260.0
    assert table["PSU1 Input Power"].thresholds["unc"] == 800.0


def test_lost_ac_and_an_empty_bay(guest: QemuGuest, tmp_path: Path) -> None:
    with lab_bmc(guest, tmp_path, "ac-lost", "absent") as bmc:
        sensors = {s.name: s for s in parse_ipmitool(ipmitool(bmc, "sdr", "elist")).sensors}
    assert sensors["PSU1 Status"].conditions == ("present", "ac-lost")
    assert (sensors["PSU1 Input Volt"].reading, sensors["PSU1 Input Volt"].status) == (
        0.0, "lcr")
    assert sensors["PSU2 Status"].conditions == ()
    assert sensors["PSU2 Input Power"].status == "ns"  # an empty bay reads nothing
    assert sensors["PS Redundancy"].conditions == ("insufficient",)


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator[Any]:
    opened: list[HostUnderTest] = []
    store = Store(tmp_path / "vet.sqlite")

    def make(port: int, psu_count: int | None) -> HostUnderTest:
        power = PowerConfig("ipmi", {"address": "127.0.0.1", "port": port,
                                     "username": "admin", "timeout_s": 20},
                            {"password": PASSWORD})
        entry = Host("vm-psu", Connection("local"), spec=ExpectedSpec(psu_count=psu_count),
                     power=power, stage_params={"psu": {"timeout_s": 30,
                                                        "inband_devices": []}})
        ctx = RunContext(f"psu{len(opened)}", "quick", store, tmp_path / "run")
        vetted = HostUnderTest(entry, LocalChannel("localhost"), ctx,
                               effective_params("quick", entry))
        vetted.enter_stage("psu")
        opened.append(vetted)
        return vetted

    yield make
    for vetted in opened:
        vetted.close()
    store.close()


def test_psu_stage_passes_with_two_healthy_psus_and_fails_on_a_failed_one(
        guest: QemuGuest, tmp_path: Path, make_host: Any) -> None:
    stage = load_suite("psu")
    with lab_bmc(guest, tmp_path, "ok", "ok") as bmc:
        healthy = make_host(bmc.port, psu_count=2)
        stage.test_power_supplies(healthy)
        too_few = make_host(bmc.port, psu_count=3)
        with pytest.raises(AssertionError, match=r"the BMC sees 2 PSU\(s\) present, the spec "
                                                 r"expects 3"):
            stage.test_power_supplies(too_few)
    evidence = "".join(p.read_text() for p in healthy.evidence.directory.iterdir())
    assert "sdr elist" in evidence and "PSU2 Status" in evidence
    assert PASSWORD not in evidence and PASSWORD not in healthy.events.path.read_text()
    assert "Fully Redundant" in evidence

    with lab_bmc(guest, tmp_path, "ok", "failed") as bmc:
        failing = make_host(bmc.port, psu_count=2)
        with pytest.raises(AssertionError) as failed:
            stage.test_power_supplies(failing)
    text = str(failed.value)
    assert text.startswith(f"BMC 127.0.0.1:{bmc.port} over the network: BMC sensor "
                           "'PSU2 Status' (entity 10.2): Failure detected: the PSU reports a "
                           "failure: replace it")
    assert "PSU1" not in text


def test_a_lab_bmc_without_psus_keeps_no_repository_and_the_stage_skips(
        guest: QemuGuest, tmp_path: Path, make_host: Any) -> None:
    with lab_bmc(guest, tmp_path) as bmc:
        host = make_host(bmc.port, psu_count=None)
        with pytest.raises(pytest.skip.Exception) as skipped:
            load_suite("psu").test_power_supplies(host)
    assert "answers IPMI but keeps no sensor data repository" in str(skipped.value)


# ------------------------------------------------------------- SMBIOS, as the guest sees it


def _qmp(path: Path, *commands: dict[str, Any]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(path))
        stream = sock.makefile("rw")
        stream.readline()  # the greeting
        for command in ({"execute": "qmp_capabilities"}, *commands):
            stream.write(json.dumps(command) + "\n")
            stream.flush()
            while True:
                answer = json.loads(stream.readline())
                if "error" in answer:
                    raise AssertionError(f"QMP {command}: {answer['error']}")
                if "return" in answer:
                    break


def _read_until(proc: subprocess.Popen[bytes], marker: bytes, deadline_s: float) -> bytes:
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + deadline_s
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise TimeoutError(f"no {marker!r} on the serial port; seen: {seen[-300:]!r}")
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            raise RuntimeError(f"QEMU exited; serial: {seen[-300:]!r}")
        seen += chunk
    return seen


def firmware_smbios(smbios_args: list[str], work: Path) -> bytes:
    """The SMBIOS tables SeaBIOS built for a guest with these -smbios options, as a
    `dmidecode --dump-bin` file: QEMU runs SeaBIOS to "No bootable device." (no disk, no
    NIC), and the entry point and table are copied out of guest memory over QMP."""
    qmp = work / "qmp.sock"
    argv = ["qemu-system-x86_64", "-machine", "q35,graphics=off", "-accel", "tcg",
            "-cpu", "qemu64", "-m", "64", "-nodefaults", "-display", "none",
            "-serial", "stdio", "-monitor", "none", "-no-reboot",
            "-qmp", f"unix:{qmp},server=on,wait=off", *smbios_args]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        _read_until(proc, b"No bootable device", TIMEOUT)
        segment, table = work / "fseg.bin", work / "table.bin"
        _qmp(qmp, {"execute": "pmemsave", "arguments": {"val": 0xF0000, "size": 0x10000,
                                                         "filename": str(segment)}})
        memory = segment.read_bytes()
        at = memory.find(b"_SM_")
        assert at >= 0 and memory[at + 0x10:at + 0x15] == b"_DMI_", "no SMBIOS 2 entry point"
        entry = bytearray(memory[at:at + 0x1F])
        length, address = struct.unpack_from("<HI", entry, 0x16)
        _qmp(qmp, {"execute": "pmemsave", "arguments": {"val": address, "size": length,
                                                         "filename": str(table)}})
    finally:
        proc.kill()
        proc.communicate(timeout=10)
        assert gone(proc.pid)
    # The dump format: the entry point at 0 with the table address rewritten to 32.
    struct.pack_into("<I", entry, 0x18, 32)
    entry[0x15] = 0
    entry[0x15] = -sum(entry[0x10:0x1F]) & 0xFF
    return bytes(entry) + b"\0" + table.read_bytes()


def test_the_guest_firmware_lists_its_psus_for_dmidecode_and_the_spec() -> None:
    inventory = load_inventory(VIRTUAL)
    work = Path(tempfile.mkdtemp(prefix="vet-psu-", dir="/tmp"))  # short QMP socket path
    try:
        spec = dataclasses.replace(lab_spec(inventory), state_dir=work)
        guest = dataclasses.replace(next(g for g in spec.guests if g.name == "vm-good"),
                                    psus=("ok", "failed"))
        write_power_supplies(spec.guest_dir(guest.name), guest.psus)
        argv = guest_argv(spec, guest, 0, "tcg")
        options = [arg for pair in itertools.pairwise(argv) if pair[0] == "-smbios"
                   for arg in pair]
        assert sum(1 for a in options if a.startswith("file=")) == 2
        dump = work / "dmi.bin"
        dump.write_bytes(firmware_smbios(options, work))
        done = subprocess.run(["dmidecode", "--from-dump", str(dump)], capture_output=True,
                              text=True, timeout=TIMEOUT, check=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    dmi = parse_dmidecode(done.stdout)
    supplies = dmi.power_supplies()
    assert [(p.name, p.location, p.status) for p in supplies] == [
        ("PSU1", "Bay 1", "Present, OK"), ("PSU2", "Bay 2", "Present, Critical")]
    assert supplies[0].max_power_capacity_w == 800 and supplies[0].serial_number == "VETPSU-0001"
    system = dmi.system()
    assert system is not None and system.serial_number == "VMGOOD-0001"
    # The spec stage's count: vm-good's vet_spec.psu_count 2 matches what the guest shows.
    hardware = merge(RawInventory(dmidecode=dmi))
    assert hardware.psu_count == 2
    expected = next(h for h in inventory if h.name == "vm-good").spec
    row = next(r for r in compare(expected, hardware) if r.item == "psu_count")
    assert (row.severity, row.message) == (None, "matches")
