"""dmidecode parser: linuxhw server dumps, this VM (no SMBIOS), malformed input, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.probes import DmiDecode, ParseError, parse_dmidecode
from tests.unit.corpus_paths import available_corpus_names, corpus_text, local_text

GIB = 1024**3
R740 = "dell-poweredge-r740_healthy.txt"
R640 = "dell-poweredge-r640_healthy.txt"
GENOA = "asrockrack-genoad12-epyc-genoa_healthy.txt"
SYS2029 = "supermicro-sys-2029u-tn24r4t_healthy.txt"
DL380G9 = "hp-proliant-dl380-gen9_psu2-present-critical.txt"
DL380G11 = "hpe-proliant-dl380-gen11_psu2-present-critical.txt"
DL380PG8 = "hp-proliant-dl380p-gen8_chassis-psu-critical_fw-detected-hw-failure.txt"
SR650 = "lenovo-thinksystem-sr650_chassis-psu-state-warning.txt"
X8DTU = "supermicro-x8dtu_memory-error-info-bad-read.txt"
CORPUS = [R740, R640, GENOA, SYS2029, DL380G9, DL380G11, DL380PG8, SR650, X8DTU]


def corpus(name: str) -> DmiDecode:
    return parse_dmidecode(corpus_text("dmidecode", name))


@pytest.mark.parametrize("name", CORPUS)
def test_every_corpus_file_parses(name: str) -> None:
    dmi = corpus(name)
    assert dmi.records[-1].title == "End Of Table"
    assert dmi.system() is not None and dmi.bios() is not None and dmi.chassis() is not None
    assert all(p.populated for p in dmi.processors()[:1])
    assert any(m.installed for m in dmi.memory_devices())
    assert dmi.system_boot_status is not None


def test_corpus_has_no_unlisted_dmidecode_files() -> None:
    assert available_corpus_names("dmidecode") <= set(CORPUS)


def test_hp_gen9_psu2_present_critical() -> None:
    psus = corpus(DL380G9).power_supplies()
    assert [(p.name, p.status) for p in psus] == [
        ("Power Supply 1", "Present, OK"),
        ("Power Supply 2", "Present, Critical"),
    ]
    assert [p.health for p in psus] == ["OK", "Critical"]
    assert all(p.present and p.plugged and p.hot_replaceable for p in psus)
    assert psus[1].max_power_capacity_w == 1400
    assert corpus(DL380G9).chassis() is not None


def test_hpe_gen11_psu2_present_critical() -> None:
    dmi = corpus(DL380G11)
    assert [p.status for p in dmi.power_supplies()] == ["Present, OK", "Present, Critical"]
    installed = [m for m in dmi.memory_devices() if m.installed]
    assert len(dmi.memory_devices()) == 32 and len(installed) == 8
    assert {m.size_bytes for m in installed} == {32 * GIB}


def test_dell_r740_psus_unknown_and_one_empty_socket() -> None:
    dmi = corpus(R740)
    psus = dmi.power_supplies()
    assert [p.status for p in psus] == ["Present, Unknown"] * 2
    assert [p.health for p in psus] == ["Unknown", "Unknown"]
    assert [p.max_power_capacity_w for p in psus] == [750, 750]
    cpus = dmi.processors()
    assert [(p.socket, p.populated) for p in cpus] == [("CPU1", True), ("CPU2", False)]
    assert cpus[1].status == "Unpopulated"
    assert cpus[0].version is not None and "Silver 4210R" in cpus[0].version
    devices = dmi.memory_devices()
    assert len(devices) == 24
    assert [m.size_bytes for m in devices if m.installed] == [32 * GIB] * 12
    assert {m.size_text for m in devices if not m.installed} == {"No Module Installed"}
    chassis = dmi.chassis()
    assert chassis is not None
    assert (chassis.boot_up_state, chassis.power_supply_state, chassis.thermal_state) == (
        "Safe", "Safe", "Safe")
    system = dmi.system()
    assert system is not None and system.product_name == "PowerEdge R740"
    bios = dmi.bios()
    assert bios is not None and bios.version == "2.8.2"


def test_dell_r640_boot_status_and_sockets() -> None:
    dmi = corpus(R640)
    assert dmi.system_boot_status == "No errors detected"
    assert [p.populated for p in dmi.processors()] == [True, True]
    assert [p.status for p in dmi.power_supplies()] == ["Present, Unknown"] * 2


def test_dl380p_gen8_chassis_psu_critical_and_firmware_detected_failure() -> None:
    dmi = corpus(DL380PG8)
    chassis = dmi.chassis()
    assert chassis is not None and chassis.power_supply_state == "Critical"
    assert dmi.system_boot_status == "Firmware-detected hardware failure"
    assert [p.status for p in dmi.power_supplies()] == ["Present, Unknown"] * 2
    assert sum(m.size_bytes or 0 for m in dmi.memory_devices()) == 32 * GIB


def test_lenovo_sr650_chassis_psu_warning_without_type_39() -> None:
    dmi = corpus(SR650)
    chassis = dmi.chassis()
    assert chassis is not None and chassis.power_supply_state == "Warning"
    assert dmi.power_supplies() == ()
    assert sum(m.size_bytes or 0 for m in dmi.memory_devices()) == 8 * 64 * GIB


def test_genoa_placeholder_strings_and_no_psu_records() -> None:
    dmi = corpus(GENOA)
    system = dmi.system()
    assert system is not None and system.manufacturer == "To Be Filled By O.E.M."
    baseboard = dmi.baseboard()
    assert baseboard is not None and baseboard.product_name == "GENOAD12M3-2Q/H"
    assert dmi.power_supplies() == ()
    (cpu,) = dmi.processors()
    assert cpu.version is not None and "EPYC 9454P" in cpu.version
    assert (cpu.core_count, cpu.thread_count) == (48, 96)
    assert dmi.smbios_version == "3.5.0"


def test_supermicro_mixed_dram_and_pmem() -> None:
    dmi = corpus(SYS2029)
    installed = [m for m in dmi.memory_devices() if m.installed]
    dram = [m for m in installed if not m.is_persistent_memory]
    pmem = [m for m in installed if m.is_persistent_memory]
    assert [(m.size_bytes, m.type) for m in dram] == [(16 * GIB, "DDR4")] * 8
    assert [m.size_bytes for m in pmem] == [129408 * 1024**2] * 8
    # Seven modules are in App Direct mode (non-volatile); P2-DIMMD2 alone reports its
    # 126 GB as volatile (Memory Mode): a mixed configuration worth a human look.
    modes = [(m.locator, m.volatile_size_bytes, m.non_volatile_size_bytes) for m in pmem]
    assert modes[-1] == ("P2-DIMMD2", 126 * GIB, None)
    assert {(v, nv) for _, v, nv in modes[:-1]} == {(None, 126 * GIB)}
    assert [p.status for p in dmi.power_supplies()] == ["Present, OK"] * 2
    assert {p.name for p in dmi.power_supplies()} == {"PWS-1K62A-1R"}


def test_x8dtu_type18_bad_read_linked_to_dimm_p1_dimm1a() -> None:
    dmi = corpus(X8DTU)
    records = dmi.memory_error_records()
    assert len(records) == 14
    errors = [r for r in records if r.is_error]
    assert [(r.handle, r.type, r.error_type, r.operation) for r in errors] == [
        ("0x002C", 18, "Bad Read", "Read"),
        ("0x002F", 18, "Bad Read", "Read"),
    ]
    array = dmi.by_handle(errors[0].linked_from[0])
    assert array is not None and array.type == 16
    dimm = next(m for m in dmi.memory_devices() if m.handle in errors[1].linked_from)
    assert dimm.locator == "P1_DIMM1A" and dimm.error_information_handle == "0x002F"


def test_x8dtu_bios_flash_is_not_system_memory() -> None:
    devices = corpus(X8DTU).memory_devices()
    ram = [m for m in devices if m.installed and m.is_system_memory]
    assert [m.size_bytes for m in ram] == [16 * GIB] * 6
    (flash,) = [m for m in devices if not m.is_system_memory]
    assert (flash.type, flash.size_bytes, flash.array_use) == ("Flash", 4 * 1024**2, "Flash Memory")


def test_list_fields_and_anonymised_bare_lines() -> None:
    dmi = corpus(DL380G9)
    bios = dmi.of_type(0)[0]
    assert "PCI is supported" in bios.lists["Characteristics"]
    assert bios.fields["Characteristics"] == ""
    flags = dmi.of_type(4)[0].lists["Flags"]
    assert "FPU (Floating-point unit on-chip)" in flags
    # linuxhw replaced the chassis "Boot-up State" line by a bare hash: kept as a note.
    chassis = dmi.of_type(3)[0]
    assert chassis.notes == ("380AD15AAB729CF25C4397C21C466ACE",)


def test_local_vm_without_smbios_is_empty() -> None:
    dmi = parse_dmidecode(local_text("dmidecode.txt"))
    assert dmi.records == ()
    assert dmi.dmidecode_version == "3.4"
    assert dmi.system() is None and dmi.power_supplies() == () and dmi.processors() == ()
    assert dmi.system_boot_status is None


@pytest.mark.parametrize(
    "text",
    [
        "# dmidecode 3.4\n# No SMBIOS nor DMI entry point found, sorry.\n",
        "# No SMBIOS nor DMI entry point found, sorry.\n",
        "# dmidecode 3.4\nGetting SMBIOS data from sysfs.\nSMBIOS 3.0.0 present.\n\n",
    ],
)
def test_header_only_output_is_an_empty_result(text: str) -> None:
    assert parse_dmidecode(text).records == ()


def test_type_selection_output() -> None:
    text = (
        "# dmidecode 3.4\nGetting SMBIOS data from sysfs.\nSMBIOS 3.3 present.\n\n"
        "Handle 0x0020, DMI type 32, 20 bytes\nSystem Boot Information\n"
        "\tStatus: No errors detected\n"
    )
    dmi = parse_dmidecode(text)
    assert dmi.smbios_version == "3.3"
    assert dmi.system_boot_status == "No errors detected"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty output"),
        ("bash: dmidecode: command not found\n", "no 'Handle 0x"),
        ("Handle 0x0001, DMI type 1, 27 bytes\n", "has no title"),
        ("# dmidecode 3.4\nHandle 0x0001, DMI type 1, 27 bytes\n\tManufacturer: X\n", "no title"),
        ("# dmidecode 3.4\nHandle 0x00zz, DMI type one\nSystem Information\n", "malformed record"),
        ("Handle 0x0001, DMI type " + "1" * 5000 + ", 2 bytes\nX\n", "malformed record"),
    ],
)
def test_malformed_input_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_dmidecode(text)
    assert str(info.value).startswith("dmidecode: ") and info.value.tool == "dmidecode"


def test_truncated_capture_keeps_complete_records() -> None:
    text = corpus_text("dmidecode", DL380G9)
    cut = text[: text.index("Status: Present, Critical")]
    dmi = parse_dmidecode(cut)
    assert [p.name for p in dmi.power_supplies()] == ["Power Supply 1", "Power Supply 2"]
    assert dmi.power_supplies()[1].status is None


def _parse_or_parse_error(text: str) -> None:
    try:
        assert isinstance(parse_dmidecode(text), DmiDecode)
    except ParseError as error:
        assert error.tool == "dmidecode"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _parse_or_parse_error(text)


_REAL_LINES = [
    "# dmidecode 3.4",
    "Handle 0x0001, DMI type 1, 27 bytes",
    "Handle 0x002C, DMI type 18, 23 bytes",
    "Handle 0x0003, DMI type 17, 40 bytes",
    "System Power Supply",
    "Memory Device",
    "\tSize: 16384 MB",
    "\tSize: No Module Installed",
    "\tError Information Handle: 0x002C",
    "\tArray Handle: 0x0001",
    "\tStatus: Present, Critical",
    "\tType: Bad Read",
    "\tCharacteristics:",
    "\t\tPCI is supported",
    "\tMax Power Capacity: 750 W",
    "\tCore Count: 8",
    "",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_REAL_LINES) | st.text(max_size=20), max_size=30))
def test_fuzz_shuffled_dmidecode_lines(lines: list[str]) -> None:
    try:
        dmi = parse_dmidecode("\n".join(lines))
    except ParseError as error:
        assert error.tool == "dmidecode"
        return
    dmi.system(), dmi.bios(), dmi.baseboard(), dmi.chassis(), dmi.processors()
    dmi.memory_devices(), dmi.power_supplies(), dmi.memory_error_records()
    assert dmi.system_boot_status is None or isinstance(dmi.system_boot_status, str)
