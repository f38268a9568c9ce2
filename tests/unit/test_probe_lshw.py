"""lshw -json parser: real corpus, a capture from this VM, malformed input, fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.probes import LshwReport, ParseError, parse_lshw
from tests.helpers import mutate
from tests.unit.corpus_paths import available_corpus_names, corpus_text, local_text

GIB = 1024**3
DL360P = "hp-proliant-dl360p-gen8_boot-hardware-failure-fw.json"
NUC = "intel-nuc7i7bnh_desktop_healthy.json"
FUJITSU = "fujitsu-lifebook-e782_laptop_german-locale_array-format.json"
CORPUS = [DL360P, NUC, FUJITSU]

KEYS = ["class", "id", "children", "size", "units", "configuration", "logicalname", "serial",
        "businfo", "capacity", "boot", "cores", "link", "driver", "disabled"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    | st.sampled_from(["system", "memory", "bank:0", "processor", "disk", "network", "bit/s",
                       "power", "display", "memory:0", "yes", "8"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5),
    max_leaves=25,
)


def corpus(name: str) -> LshwReport:
    return parse_lshw(corpus_text("lshw", name))


@pytest.mark.parametrize("name", CORPUS)
def test_every_corpus_file_parses(name: str) -> None:
    report = corpus(name)
    assert report.system.product
    assert report.cpus
    assert report.memory_total_bytes is not None and report.memory_total_bytes > 0


def test_corpus_has_no_unlisted_lshw_files() -> None:
    assert available_corpus_names("lshw") <= set(CORPUS)


def test_dl360p_reports_firmware_detected_hardware_failure() -> None:
    report = corpus(DL360P)
    assert report.system.vendor == "HP"
    assert report.system.product == "ProLiant DL360p Gen8 (763480-B21)"
    assert report.system.boot_status == "hardware-failure-fw"
    assert report.system.chassis == "rackmount"


def test_dl360p_inventory() -> None:
    report = corpus(DL360P)
    assert [(c.product, c.cores, c.enabled_cores, c.threads) for c in report.cpus] == [
        ("Intel(R) Xeon(R) CPU E5-2650 v2 @ 2.60GHz", 8, 8, 16)
    ] * 2
    assert [c.slot for c in report.cpus] == ["Proc 1", "Proc 2"]
    assert len(report.memory_banks) == 24
    assert len(report.populated_banks) == 16
    assert {b.size_bytes for b in report.populated_banks} == {16 * GIB}
    empty = [b for b in report.memory_banks if not b.populated]
    assert len(empty) == 8 and all(b.size_bytes is None for b in empty)
    assert empty[0].slot == "PROC  1 DIMM  3"
    # memory:0/1 carry no size here, so the total comes from the banks.
    assert report.memory_total_bytes == 256 * GIB
    assert [p.description for p in report.power_supplies] == ["Power Supply 1", "Power Supply 2"]
    assert [d.product for d in report.displays] == ["MGA G200EH"]


def test_dl360p_nics_link_state_and_driver() -> None:
    nics = {n.businfo: n for n in corpus(DL360P).nics}
    port0, port1 = nics["pci@0000:03:00.0"], nics["pci@0000:03:00.1"]
    assert (port0.logicalname, port0.driver, port0.link, port0.speed_bps) == (
        "eno1", "bnx2x", True, 10_000_000_000)
    assert (port1.logicalname, port1.link, port1.speed_bps, port1.capacity_bps) == (
        "eno2", False, None, 10_000_000_000)
    assert port1.disabled
    connectx = nics["pci@0000:07:00.0"]
    assert connectx.driver == "mlx4_core" and connectx.logicalname is None


def test_dl360p_disks_skip_the_medium_duplicate() -> None:
    disks = corpus(DL360P).disks
    assert [d.logicalname for d in disks] == ["/dev/sda", "/dev/sdb", "/dev/sdc"]
    assert disks[2].product == "Ultra Fit" and disks[2].size_bytes == 15376318464


def test_german_locale_array_layout_yields_dimms_and_cpu() -> None:
    report = corpus(FUJITSU)
    assert report.system.product == "LIFEBOOK E782"
    assert report.system.boot_status == "normal"
    (cpu,) = report.cpus
    assert cpu.product == "Intel(R) Core(TM) i7-3540M CPU @ 3.00GHz"
    assert (cpu.cores, cpu.threads) == (2, 4)
    assert [(b.slot, b.size_bytes) for b in report.memory_banks] == [
        ("DIMM1", 8 * GIB), ("DIMM2", 8 * GIB)]
    second = report.memory_banks[1]
    assert (second.vendor, second.serial, second.product) == ("0000", "00000000", None)
    # Localized description is kept verbatim but never used to classify.
    assert second.description is not None and "Synchron" in second.description
    assert report.memory_total_bytes == 16 * GIB
    assert [n.logicalname for n in report.nics] == ["enp0s25", "wlp10s0"]
    assert [d.serial for d in report.disks] == ["S4XBNF0N801630J"]
    assert [p.id for p in report.power_supplies] == ["battery"]


def test_nuc_single_object_layout() -> None:
    report = corpus(NUC)
    assert report.system.product == "NUC7i7BNH"
    assert report.system.boot_status == "normal"
    assert [b.serial for b in report.memory_banks] == ["542C6890", "512C5790"]
    assert report.memory_total_bytes == 16 * GIB
    eno1 = next(n for n in report.nics if n.logicalname == "eno1")
    assert (eno1.mac, eno1.driver, eno1.speed_bps) == ("94:c6:91:15:14:3e", "e1000e", 10**9)
    assert {d.logicalname for d in report.disks} == {"/dev/sda", "/dev/sdb"}


def test_local_capture_of_this_vm() -> None:
    report = parse_lshw(local_text("lshw.json"))
    assert report.system.vendor is None and report.system.boot_status is None
    assert [c.product for c in report.cpus] == ["Intel(R) Xeon(R) Processor"]
    assert report.memory_banks == ()
    assert report.memory_total_bytes == 24 * GIB
    assert [(d.logicalname, d.size_bytes) for d in report.disks] == [("/dev/vda", None)]
    (nic,) = report.nics  # the PCI function and its virtio child are one NIC
    assert (nic.logicalname, nic.mac, nic.driver, nic.link) == (
        "eth0", "02:fc:00:00:00:01", "virtio_net", True)
    assert nic.product == "Virtio 1.0 network device"
    assert report.displays == () and report.power_supplies == ()


def test_array_and_object_layouts_agree() -> None:
    text = local_text("lshw.json")
    assert parse_lshw("[" + text + "]") == parse_lshw(text)


@pytest.mark.parametrize("cut", [1, 40, 500, 5000, -3])
def test_truncated_output_is_a_parse_error(cut: int) -> None:
    text = local_text("lshw.json")
    with pytest.raises(ParseError, match=r"^lshw: .*truncated JSON at line \d+") as info:
        parse_lshw(text[:cut])
    assert info.value.tool == "lshw"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty output"),
        ("lshw: command not found", "invalid JSON at line 1"),
        ("42", "got a number"),
        ("[]", "empty array"),
        ('{"id": "x", "class": "bus"}', "no node with class 'system'"),
        ('{"class": "system", "children": {"a": 1}}', "expected a JSON array"),
        ('{"class": "system", "children": [1]}', "expected a JSON object"),
        ('{"class": "system", "children": [{"class": "memory", "id": "bank:0", '
         '"size": "big"}]}', "expected an integer"),
        ('{"class": ["system"]}', "expected text"),
        ("1" * 5000, "unreadable JSON"),  # beyond Python's int-conversion limit
    ],
)
def test_malformed_input_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_lshw(text)
    assert str(info.value).startswith("lshw: ")


def _parse_or_parse_error(text: str) -> None:
    try:
        assert isinstance(parse_lshw(text), LshwReport)
    except ParseError as error:
        assert error.tool == "lshw"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _parse_or_parse_error(text)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_fuzz_arbitrary_json(value: object) -> None:
    _parse_or_parse_error(json.dumps(value))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_capture(data: st.DataObject) -> None:
    document = json.loads(local_text("lshw.json"))
    _parse_or_parse_error(json.dumps(mutate(data, document, JSON_VALUES)))

