"""lspci parsers: -vmm and one-line formats from real servers and this VM, bad input, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.probes import ParseError, PciDevice, parse_lspci_nn, parse_lspci_vmm
from tests.unit.corpus_paths import available_corpus_names, corpus_text, local_text

VMWARE = "vmware-vm_ubuntu-20.10_lspci-nnmmv.txt"
DL360P_NN = "hp-proliant-dl360p-gen8_lspci-nn.txt"
DL360P_VVV = "hp-proliant-dl360p-gen8_lspci-vvvnn.txt"
H100 = "supermicro-as-4125gs-tnrt_2x-h100l_lspci.txt"
CORPUS = [VMWARE, DL360P_NN, DL360P_VVV, H100]


def test_corpus_has_no_unlisted_lspci_files() -> None:
    assert available_corpus_names("lspci") <= set(CORPUS)


def test_vmware_nnmmv() -> None:
    devices = parse_lspci_vmm(corpus_text("lspci", VMWARE))
    assert len(devices) == 47
    first = devices[0]
    assert (first.slot, first.class_name, first.class_id) == ("00:00.0", "Host bridge", "0600")
    assert (first.vendor_name, first.vendor_id, first.device_id) == (
        "Intel Corporation", "8086", "7190")
    assert first.device_name == "440BX/ZX/DX - 82443BX/ZX/DX Host bridge"
    assert (first.subsystem_vendor_name, first.subsystem_vendor_id) == ("VMware", "15ad")
    assert (first.subsystem_device_name, first.subsystem_device_id) == (
        "Virtual Machine Chipset", "1976")
    assert first.rev == "01"
    ide = next(d for d in devices if d.slot == "00:07.1")
    assert ide.prog_if == "8a"
    # The upstream fixture ends with a hand-edited copy of the previous block: spaces
    # instead of tabs, and a slot with a short domain.
    assert (devices[-2].slot, devices[-1].slot) == ("02:05.0", "ff:02:05.0")
    assert devices[-1].physical_slot == "37"


def test_dl360p_nn() -> None:
    devices = parse_lspci_nn(corpus_text("lspci", DL360P_NN))
    assert len(devices) == 146
    by_ids = {(d.vendor_id, d.device_id) for d in devices}
    assert ("15b3", "1007") in by_ids  # ConnectX-3 Pro
    assert ("103c", "323b") in by_ids  # Smart Array Gen8
    bcm = [d for d in devices if (d.vendor_id, d.device_id) == ("14e4", "168e")]
    assert [d.slot for d in bcm] == ["03:00.0", "03:00.1"]
    connectx = next(d for d in devices if d.slot == "07:00.0")
    assert connectx.class_name == "Infiniband controller" and connectx.class_id == "0207"
    assert connectx.description == "Mellanox Technologies MT27520 Family [ConnectX-3 Pro]"
    assert connectx.rev is None
    assert devices[0].rev == "04"


def test_dl360p_vvvnn_details() -> None:
    verbose = parse_lspci_nn(corpus_text("lspci", DL360P_VVV))
    plain = parse_lspci_nn(corpus_text("lspci", DL360P_NN))
    assert [d.slot for d in verbose] == [d.slot for d in plain]
    assert [(d.vendor_id, d.device_id) for d in verbose] == [
        (d.vendor_id, d.device_id) for d in plain]
    devices = {d.slot: d for d in verbose}
    assert (devices["03:00.0"].driver, devices["03:00.0"].modules) == ("bnx2x", ("bnx2x",))
    assert devices["07:00.0"].driver == "mlx4_core"
    assert devices["07:00.0"].physical_slot == "2"
    assert devices["01:00.1"].prog_if == "00"
    assert devices["20:05.2"].numa_node == 1
    # The IIO RAS functions show error status bits; the raw lines are kept for a human.
    for slot in ("00:05.2", "20:05.2"):
        assert devices[slot].description.endswith("IIO RAS")
        assert any("FatalErr+" in line for line in devices[slot].details)
    link = [line for line in devices["07:00.0"].details if line.startswith("LnkSta:")]
    assert link and "8GT/s" in link[0] and "Width x8" in link[0]


def test_supermicro_plain_lspci_two_h100() -> None:
    devices = parse_lspci_nn(corpus_text("lspci", H100))
    assert len(devices) == 149
    gpus = [d for d in devices if d.class_name == "3D controller"]
    assert [(d.slot, d.description, d.rev) for d in gpus] == [
        ("c1:00.0", "NVIDIA Corporation GH100 [H100L 94GB]", "a1"),
        ("e1:00.0", "NVIDIA Corporation GH100 [H100L 94GB]", "a1"),
    ]
    assert all(d.vendor_id is None and d.class_id is None for d in gpus)
    peripheral = next(d for d in devices if d.slot == "00:00.3")
    assert (peripheral.class_name, peripheral.class_id) == ("Generic system peripheral", "0807")


def test_local_vmm_capture() -> None:
    devices = parse_lspci_vmm(local_text("lspci.txt"))
    assert [d.slot for d in devices] == [f"00:0{i}.0" for i in range(6)]
    bridge = devices[0]
    assert (bridge.vendor_id, bridge.device_id, bridge.device_name) == ("8086", "0d57", "Device")
    assert bridge.driver is None
    assert {d.driver for d in devices[1:]} == {"virtio-pci"}
    nic = devices[3]
    assert (nic.class_name, nic.class_id, nic.device_name) == (
        "Ethernet controller", "0200", "Virtio 1.0 network device")
    assert devices[1].class_id == "ffff"


def test_local_nn_capture_matches_vmm() -> None:
    plain = parse_lspci_nn(local_text("lspci-nn.txt"))
    vmm = parse_lspci_vmm(local_text("lspci.txt"))
    assert [(d.slot, d.class_id, d.vendor_id, d.device_id, d.rev) for d in plain] == [
        (d.slot, d.class_id, d.vendor_id, d.device_id, d.rev) for d in vmm]
    assert plain[3].description == "Red Hat, Inc. Virtio 1.0 network device"


def test_vmm_without_nn_and_with_domain() -> None:
    text = (
        "Slot:\t0000:c1:00.0\nClass:\t3D controller\nVendor:\tNVIDIA Corporation\n"
        "Device:\tGH100 [H100L 94GB]\nRev:\ta1\nDriver:\tnvidia\nModule:\tnvidia\n"
        "Module:\tnouveau\nNUMANode:\t1\n"
    )
    (gpu,) = parse_lspci_vmm(text)
    assert (gpu.slot, gpu.class_id, gpu.vendor_id, gpu.device_id) == (
        "0000:c1:00.0", None, None, None)
    assert gpu.device_name == "GH100 [H100L 94GB]"
    assert (gpu.driver, gpu.modules, gpu.numa_node) == ("nvidia", ("nvidia", "nouveau"), 1)


def test_empty_output_is_no_devices() -> None:
    assert parse_lspci_vmm("") == [] and parse_lspci_nn("\n") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Slot:\t00:00.0\nClass:\tHost bridge\nVendor:\tIntel\n", "has no 'Device:'"),
        ("Class:\tHost bridge\nVendor:\tIntel\nDevice:\tX\n", "without a valid 'Slot:'"),
        ("Slot:\tnot-a-slot\nClass:\tA\nVendor:\tB\nDevice:\tC\n", "without a valid 'Slot:'"),
        ("Slot:\t00:00.0\nthis line has no key\n", "expected 'Key:<TAB>value'"),
        ("pcilib: Cannot open /proc/bus/pci\n", "without a valid 'Slot:'"),
    ],
)
def test_malformed_vmm_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_lspci_vmm(text)
    assert str(info.value).startswith("lspci: ") and info.value.tool == "lspci"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\tKernel driver in use: e1000e\n", "before any device line"),
        ("lspci: command not found\n", "expected 'SLOT CLASS: DEVICE'"),
        ("00:00.0 Host bridge\n", "expected 'SLOT CLASS: DEVICE'"),
        ('{"slot": "00:00.0"}\n', "expected 'SLOT CLASS: DEVICE'"),
    ],
)
def test_malformed_nn_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_lspci_nn(text)
    assert str(info.value).startswith("lspci: ")


def test_truncated_vmm_block_is_a_parse_error() -> None:
    text = local_text("lspci.txt")
    cut = text[: text.index("Vendor:\tRed Hat, Inc. [1af4]\nDevice:\tVirtio 1.0 RNG")]
    with pytest.raises(ParseError, match=r"00:05.0 has no 'Vendor:' \(truncated\?\)"):
        parse_lspci_vmm(cut)


def _check(parser_name: str, text: str) -> None:
    parser = parse_lspci_vmm if parser_name == "vmm" else parse_lspci_nn
    try:
        devices = parser(text)
    except ParseError as error:
        assert error.tool == "lspci"
        return
    assert all(isinstance(d, PciDevice) for d in devices)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["vmm", "nn"]), st.text())
def test_fuzz_arbitrary_text(parser_name: str, text: str) -> None:
    _check(parser_name, text)


_VMM_LINES = ["Slot:\t00:01.0", "Class:\tEthernet controller [0200]", "Vendor:\tIntel [8086]",
              "Device:\tX [1234]", "Driver:\tixgbe", "NUMANode:\t٣", "Module:\tx", "", "Rev:\t01"]
_NN_LINES = ["00:01.0 Ethernet controller [0200]: Intel Corporation X [8086:1234] (rev 01)",
             "0000:3b:00.0 3D controller: NVIDIA Corporation GH100 (prog-if 00 [x])",
             "\tSubsystem: Dell Device [1028:2001]", "\tKernel driver in use: nvidia",
             "\tNUMA node: 1", "\tKernel modules: a, b", ""]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["vmm", "nn"]), st.lists(
    st.sampled_from(_VMM_LINES + _NN_LINES) | st.text(max_size=15), max_size=20))
def test_fuzz_shuffled_lspci_lines(parser_name: str, lines: list[str]) -> None:
    _check(parser_name, "\n".join(lines))
