"""The stages' fail paths for hardware this machine does not have: the real stage functions
run on this machine (LocalChannel), with recorded-output stand-ins first on PATH for the
tools that read that hardware (tests/fixtures/recorded_tools.py): an uncorrectable EDAC
error and machine checks logged during a stress, NVIDIA GPUs (an XID, a FAULTY gpu_burn),
an in-band BMC with a failed PSU. stress-ng, the shells and everything else are real.
The PSU stage over the network runs the real ipmitool against OpenIPMI's ipmi_sim."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.console.local import LocalChannel
from harness.host import HostUnderTest, RunContext
from harness.models import Connection, ExpectedGpu, ExpectedSpec, Host, PowerConfig
from harness.profiles import effective_params
from harness.store import Store
from tests.fixtures.recorded_tools import DATA, RecordedTools, Rule, recorded
from tests.helpers import load_suite
from tests.integration.test_probe_tools import SimBmc, _need

__all__ = ["recorded"]  # the fixture, used by name below

PROBES = DATA / "probes"
CORPUS = DATA / "corpus"
KERNEL = PROBES / "kernel-errors-dmesg.txt"
SHORT: dict[str, dict[str, Any]] = {
    "cpu": {"duration_s": 2, "stressors": ["cpu"], "workers_per_stressor": 1},
    "memory": {"duration_s": 2, "workers": 1, "max_mib": 32},
    "gpu": {"duration_s": 2, "sample_s": 1},
    "psu": {"timeout_s": 30},
}


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator[Any]:
    opened: list[HostUnderTest] = []
    store = Store(tmp_path / "vet.sqlite")

    def make(stage: str, spec: ExpectedSpec | None = None, power: PowerConfig | None = None,
             **params: Any) -> HostUnderTest:
        stages: dict[str, dict[str, Any]] = {**SHORT, stage: {**SHORT.get(stage, {}), **params}}
        entry = Host("localhost", Connection("local"), spec=spec or ExpectedSpec(),
                     power=power or PowerConfig("manual"), stage_params=stages)
        ctx = RunContext("rec1", "quick", store, tmp_path / "run")
        vetted = HostUnderTest(entry, LocalChannel("localhost"), ctx,
                               effective_params("quick", entry))
        vetted.enter_stage(stage)
        opened.append(vetted)
        return vetted

    yield make
    for vetted in opened:
        vetted.close()
    store.close()


def kernel_log(tmp_path: Path, *keywords: str) -> tuple[Path, Path]:
    """(before, after) excerpts of the recorded dmesg: the boot lines, then the boot lines
    plus the lines containing any of `keywords` (what the kernel logged during the stage)."""
    lines = KERNEL.read_text().splitlines(keepends=True)
    boot = [line for line in lines if float(line[1:13]) < 10]
    during = [line for line in lines if float(line[1:13]) >= 10
              and any(k in line for k in keywords)]
    before, after = tmp_path / "dmesg-before.txt", tmp_path / "dmesg-after.txt"
    before.write_text("".join(boot))
    after.write_text("".join(boot + during))
    return before, after


def edac_with_ue(tmp_path: Path) -> tuple[Path, Path]:
    """(before, after): the skx_edac capture, then the same with one uncorrectable error on
    its first DIMM (hand-edited: EDAC UE cannot be produced here)."""
    before = PROBES / "edac-skx-ce.txt"
    text = before.read_text()
    for old, new in (("mc0/ue_count:0", "mc0/ue_count:1"),
                     ("mc0/dimm0/dimm_ue_count:0", "mc0/dimm0/dimm_ue_count:1")):
        assert old in text
        text = text.replace(old, new)
    after = tmp_path / "edac-ue.txt"
    after.write_text(text)
    return before, after


# ----------------------------------------------------------------------------- memory


def test_memory_fails_on_an_uncorrectable_error_during_the_stress(
        recorded: RecordedTools, make_host: Any, tmp_path: Path) -> None:
    before, after = edac_with_ue(tmp_path)
    recorded.add("grep", Rule("/sys/devices/system/edac/mc", (before, after)))
    dmesg_before, dmesg_after = kernel_log(tmp_path, "NOT-IN-THE-LOG")
    recorded.add("dmesg", Rule("", (dmesg_before, dmesg_after)))
    host = make_host("memory")
    with pytest.raises(AssertionError) as failed:
        load_suite("memory").test_memory_stress_with_verification(host)
    assert "memory errors during the test: 1 uncorrectable memory errors" in str(failed.value)
    assert recorded.calls("grep") == 2  # before and after the real stress-ng run


def test_memory_passes_with_correctable_errors_only_and_no_edac_is_reported(
        recorded: RecordedTools, make_host: Any, tmp_path: Path) -> None:
    recorded.add("grep", Rule("/sys/devices/system/edac/mc", (PROBES / "edac-skx-ce.txt",)))
    load_suite("memory").test_memory_stress_with_verification(make_host("memory"))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    recorded.add("grep", Rule("/sys/devices/system/edac/mc", (empty,), exit_status=2))
    host = make_host("memory")
    load_suite("memory").test_memory_stress_with_verification(host)
    [judged] = [p for p in host.evidence.directory.iterdir() if "memory_error" in p.name]
    assert "no EDAC memory controller" in judged.read_text()


def test_memory_reserve_never_takes_more_than_half_of_what_is_available(
        make_host: Any) -> None:
    host = make_host("memory", reserve_mib=10**9, max_mib=0, duration_s=1)
    available = int(host.run("awk '/MemAvailable/ {print $2}' /proc/meminfo").stdout) // 1024
    host.all_params["memory"]["max_mib"] = 48  # keep the real stress-ng run small
    load_suite("memory").test_memory_stress_with_verification(host)
    [tested] = [m for m in host.ctx.store.measurements("rec1", "localhost")
                if m["name"] == "tested_memory"]
    assert tested["value"] == 48 * 2**20 < available // 2 * 2**20


# ----------------------------------------------------------------------------- cpu


def test_cpu_fails_on_a_machine_check_logged_during_the_stress(
        recorded: RecordedTools, make_host: Any, tmp_path: Path) -> None:
    before, after = kernel_log(tmp_path, "Machine check events logged")
    recorded.add("dmesg", Rule("", (before, after)))
    with pytest.raises(AssertionError) as failed:
        load_suite("cpu").test_stress_with_verification(make_host("cpu"))
    message = str(failed.value)
    assert message.startswith("hardware errors logged during the CPU stress: machine check")
    assert "Machine check events logged" in message


@pytest.mark.parametrize("thermal_fails", [True, False])
def test_cpu_thermal_throttling_fails_or_warns(recorded: RecordedTools, make_host: Any,
                                               tmp_path: Path, thermal_fails: bool) -> None:
    before, after = kernel_log(tmp_path, "cpu clock throttled")
    recorded.add("dmesg", Rule("", (before, after)))
    host = make_host("cpu", thermal_fails=thermal_fails)
    if thermal_fails:
        with pytest.raises(AssertionError, match="CPU clock throttled by temperature on CPU12"):
            load_suite("cpu").test_stress_with_verification(host)
    else:
        load_suite("cpu").test_stress_with_verification(host)


# ----------------------------------------------------------------------------- gpu


def gpu_tools(recorded: RecordedTools, tmp_path: Path, burn: str = "GPU 0: OK",
              dmesg_keywords: tuple[str, ...] = ()) -> None:
    lspci = tmp_path / "lspci-nvidia.txt"  # hand-written: an A10G as lspci -nn shows it
    lspci.write_text("00:1e.0 3D controller [0302]: NVIDIA Corporation GA102GL [A10G] "
                     "[10de:2237] (rev a1)\n")
    recorded.add("lspci", Rule("-d 10de:", (lspci,)))
    recorded.add("nvidia-smi",
                 Rule("-q -x", (CORPUS / "nvidia-smi" /
                                "a10g_idle-p8_remapped-rows-clean_q-x_v11.xml",)),
                 Rule("-q", (CORPUS / "nvidia-smi" /
                             "h100-80gb-hbm3_capture-bundle_q-text_query-gpu-csv_idle-and-load"
                             ".txt",)))
    result = tmp_path / "gpu-burn.txt"  # gpu_burn's last lines, as it prints them
    result.write_text(f"Tested 1 GPUs:\n\t{burn}\n")
    # The stand-in loads a CPU for the load's duration (2 s), as gpu_burn loads the GPU.
    recorded.add("gpu_burn", Rule("", (result,), run="stress-ng --cpu 1 --timeout 2s -q"))
    before, after = kernel_log(tmp_path, *dmesg_keywords or ("NOT-IN-THE-LOG",))
    recorded.add("dmesg", Rule("", (before, after)))


def test_gpu_passes_with_a_healthy_gpu_and_records_the_load(
        recorded: RecordedTools, make_host: Any, tmp_path: Path) -> None:
    gpu_tools(recorded, tmp_path)
    host = make_host("gpu", spec=ExpectedSpec(gpus=(ExpectedGpu("A10G"),)))
    load_suite("gpu").test_gpus_healthy_under_load(host)
    assert recorded.calls("gpu_burn") == 1
    assert recorded.calls("nvidia-smi", 1) >= 1, "no nvidia-smi sample during the load"
    measured = {m["name"] for m in host.ctx.store.measurements("rec1", "localhost")}
    assert "gpu0_temperature" in measured


def test_gpu_fails_on_an_xid_logged_during_the_load(
        recorded: RecordedTools, make_host: Any, tmp_path: Path) -> None:
    gpu_tools(recorded, tmp_path, dmesg_keywords=("Xid",))
    with pytest.raises(AssertionError) as failed:
        load_suite("gpu").test_gpus_healthy_under_load(make_host("gpu"))
    message = str(failed.value)
    assert "NVIDIA XID 79 (GPU has fallen off the bus; class hardware) on PCI:0000:41:00" in message
    assert "XID 13" not in message  # an application fault is a note, not a GPU fault


def test_gpu_fails_when_gpu_burn_finds_a_faulty_gpu(
        recorded: RecordedTools, make_host: Any, tmp_path: Path) -> None:
    gpu_tools(recorded, tmp_path, burn="GPU 0: FAULTY")
    with pytest.raises(AssertionError, match=r"gpu_burn: GPU\(s\) \(0,\) computed wrong"):
        load_suite("gpu").test_gpus_healthy_under_load(make_host("gpu"))


def test_gpu_expected_but_missing_fails_and_none_expected_skips(make_host: Any) -> None:
    # This machine has no GPU and no nvidia-smi: the real lspci finds no NVIDIA device.
    host = make_host("gpu", spec=ExpectedSpec(gpus=(ExpectedGpu("H100", 8),)))
    with pytest.raises(AssertionError, match=r"expected GPU missing: the spec expects 8 x "
                                             r"'H100'; no NVIDIA GPU on the PCI bus"):
        load_suite("gpu").test_gpus_healthy_under_load(host)
    with pytest.raises(pytest.skip.Exception, match="no GPU expected"):
        load_suite("gpu").test_gpus_healthy_under_load(make_host("gpu"))


def test_gpu_expected_model_not_the_one_installed_fails(
        recorded: RecordedTools, make_host: Any, tmp_path: Path) -> None:
    gpu_tools(recorded, tmp_path)
    host = make_host("gpu", spec=ExpectedSpec(gpus=(ExpectedGpu("A10G", 2),)))
    with pytest.raises(AssertionError, match=r"the spec expects 2 x 'A10G', nvidia-smi "
                                             r"lists 1"):
        load_suite("gpu").test_gpus_healthy_under_load(host)


# ----------------------------------------------------------------------------- psu


def test_psu_in_band_failed_psu_fails_and_healthy_passes(
        recorded: RecordedTools, make_host: Any, tmp_path: Path) -> None:
    device = tmp_path / "ipmi0"  # stands for /dev/ipmi0
    device.write_text("")
    recorded.add("ipmitool", Rule("sdr elist", (PROBES / "ipmitool-elist-hpe-psu-failed.txt",)))
    host = make_host("psu", inband_devices=[str(device)])
    with pytest.raises(AssertionError) as failed:
        load_suite("psu").test_power_supplies(host)
    assert str(failed.value).startswith(f"in-band ({device}): BMC sensor 'Power Supply 1'")
    assert "Failure detected" in str(failed.value)

    recorded.add("ipmitool", Rule("sdr elist",
                                  (PROBES / "ipmitool-elist-dell-healthy.txt",)))
    load_suite("psu").test_power_supplies(make_host("psu", inband_devices=[str(device)]))


def test_psu_without_a_bmc_is_skipped_with_the_reason(make_host: Any, tmp_path: Path) -> None:
    host = make_host("psu", inband_devices=[str(tmp_path / "no-ipmi0")])
    with pytest.raises(pytest.skip.Exception) as skipped:
        load_suite("psu").test_power_supplies(host)
    assert "no BMC: no IPMI device on the host" in str(skipped.value)
    assert "vet_power's driver is 'manual', not ipmi" in str(skipped.value)
    strict = make_host("psu", inband_devices=[], require_bmc=True)
    with pytest.raises(AssertionError, match=r"psu\.require_bmc: no BMC"):
        load_suite("psu").test_power_supplies(strict)


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[SimBmc]:
    _need("ipmi_sim", "sdrcomp", "ipmitool")
    sim = SimBmc(tmp_path / "sim")
    try:
        yield sim
    finally:
        sim.stop()


def test_psu_over_the_network_against_a_simulated_bmc(bmc: SimBmc, make_host: Any) -> None:
    power = PowerConfig("ipmi", {"address": "127.0.0.1", "port": bmc.port,
                                 "username": "admin", "cipher_suite": 3},
                        {"password": bmc.password})
    two = ExpectedSpec(psu_count=2)
    host = make_host("psu", spec=two, power=power, inband_devices=[])
    load_suite("psu").test_power_supplies(host)
    evidence = "".join(p.read_text() for p in host.evidence.directory.iterdir())
    assert "sdr elist" in evidence and bmc.password not in evidence

    three = make_host("psu", spec=ExpectedSpec(psu_count=3), power=power, inband_devices=[])
    with pytest.raises(AssertionError, match=r"the BMC sees 2 PSU\(s\) present, the spec "
                                             r"expects 3"):
        load_suite("psu").test_power_supplies(three)

    bmc.console("sensor_set_bit 0x20 0 3 1 1 0")  # PS2: failure detected
    failed = make_host("psu", spec=two, power=power, inband_devices=[])
    with pytest.raises(AssertionError) as stopped:
        load_suite("psu").test_power_supplies(failed)
    assert str(stopped.value).startswith(
        f"BMC 127.0.0.1:{bmc.port} over the network: BMC sensor 'PS2 Status'")
    events = failed.events.path.read_text()
    assert bmc.password not in events
