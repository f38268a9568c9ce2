"""nvidia-smi parser: XML (v11-v13), -q text bundles, the default table, bad input, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.judge import judge_nvidia_smi
from harness.probes._common import ParseError
from harness.probes.nvidia_smi import NvidiaGpu, NvidiaSmiReport, parse_nvidia_smi
from tests.unit.corpus_paths import available_corpus_names, corpus_text

A100 = "a100-sxm4-80gb_mig-enabled_q-x_v12.xml"
A10G = "a10g_idle-p8_remapped-rows-clean_q-x_v11.xml"
H100 = "h100-80gb-hbm3_capture-bundle_q-text_query-gpu-csv_idle-and-load.txt"
H200 = "h200_capture-bundle_q-text_query-gpu-csv_idle-and-load.txt"
L40S = "l40s_capture-bundle_q-text_query-gpu-csv_idle-and-load.txt"
P2000 = "quadro-p2000_q-x_v12.xml"
RTX3080 = "rtx-3080_consumer-no-ecc_q-x_v13.xml"
K80 = "tesla-k80-x4_nvidia-smi-default-table.txt"
T4 = "tesla-t4_link-x8-of-x16_q-x.xml"
CORPUS = {A100: "xml", A10G: "xml", H100: "query-text", H200: "query-text", L40S: "query-text",
          P2000: "xml", RTX3080: "xml", K80: "table", T4: "xml"}

QUERY_TEXT = """
==============NVSMI LOG==============

Timestamp                                 : Mon Jan  8 10:00:00 2024
Driver Version                            : 470.223.02
CUDA Version                              : 11.4

Attached GPUs                             : 1
GPU 00000000:3B:00.0
    Product Name                          : Tesla V100-PCIE-32GB
    Serial Number                         : 1561920012345
    GPU UUID                              : GPU-11111111-2222-3333-4444-555555555555
    Performance State                     : P0
    Clocks Throttle Reasons
        Idle                              : Not Active
        HW Slowdown                       : Active
            HW Thermal Slowdown           : Active
            HW Power Brake Slowdown       : Not Active
    ECC Errors
        Volatile
            Single Bit
                Device Memory             : 2
                Total                     : 2
            Double Bit
                Device Memory             : 1
                Total                     : 1
        Aggregate
            Single Bit
                Total                     : 40
            Double Bit
                Total                     : 1
    Retired Pages
        Single Bit ECC                    : 3
        Double Bit ECC                    : 1
        Pending Page Blacklist            : Yes
    Temperature
        GPU Current Temp                  : 88 C
        GPU Shutdown Temp                 : 90 C
        GPU Slowdown Temp                 : 87 C
"""


def corpus(name: str) -> NvidiaSmiReport:
    return parse_nvidia_smi(corpus_text("nvidia-smi", name))


def only_gpu(report: NvidiaSmiReport) -> NvidiaGpu:
    (gpu,) = report.gpus
    return gpu


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_corpus_file_parses(name: str) -> None:
    report = corpus(name)
    assert report.format == CORPUS[name]
    assert report.gpus and all(gpu.product_name for gpu in report.gpus)
    assert all(gpu.pci_bus_id for gpu in report.gpus)


def test_corpus_has_no_unlisted_nvidia_smi_files() -> None:
    assert available_corpus_names("nvidia-smi") == set(CORPUS)


def test_a100_v12_xml() -> None:
    report = corpus(A100)
    assert report.logs[0].driver_version == "535.54.03"
    gpu = only_gpu(report)
    assert gpu.product_name == "NVIDIA A100-SXM4-80GB" and gpu.serial == "1650522003820"
    assert gpu.ecc_mode == "Enabled" and gpu.mig_mode == "Enabled"
    assert gpu.ecc_volatile is not None and gpu.ecc_aggregate is not None
    assert (gpu.ecc_volatile.correctable, gpu.ecc_volatile.uncorrectable) == (0, 0)
    assert gpu.ecc_aggregate.details["dram_uncorrectable"] == 0
    assert (gpu.pcie_gen_current, gpu.pcie_gen_max, gpu.pcie_width_current) == (4, 4, 16)
    assert gpu.temperature_c == 27 and gpu.power_draw_w == pytest.approx(67.03)
    assert gpu.power_limit_w == pytest.approx(500.0)
    assert gpu.active_clock_event_reasons == ()


def test_t4_link_x8_of_x16_and_retired_pages() -> None:
    gpu = only_gpu(corpus(T4))
    assert (gpu.pcie_width_current, gpu.pcie_width_max) == (8, 16)
    assert gpu.performance_state == "P0" and gpu.clock_event_reasons["gpu_idle"] is False
    assert (gpu.retired_pages_single_bit, gpu.retired_pages_double_bit) == (0, 0)
    assert gpu.retired_pages_pending is False


def test_a10g_idle_with_remapped_rows() -> None:
    gpu = only_gpu(corpus(A10G))
    assert gpu.active_clock_event_reasons == ("gpu_idle",)
    assert (gpu.remapped_rows_correctable, gpu.remapped_rows_uncorrectable) == (0, 0)
    assert (gpu.remapped_rows_pending, gpu.remapped_rows_failure) == (False, False)
    assert gpu.retired_pages_single_bit is None  # N/A, not 0
    assert (gpu.pcie_gen_current, gpu.pcie_width_current) == (1, 8)


def test_consumer_gpu_ecc_not_applicable() -> None:
    gpu = only_gpu(corpus(RTX3080))
    assert gpu.ecc_mode is None and gpu.ecc_volatile is None and gpu.ecc_aggregate is None
    assert gpu.remapped_rows_failure is None
    # v13 renamed the block: clocks_event_reasons with clocks_event_reason_* children.
    assert set(gpu.clock_event_reasons) >= {"gpu_idle", "hw_slowdown", "sw_thermal_slowdown"}


def test_quadro_old_single_double_bit_schema_all_na() -> None:
    gpu = only_gpu(corpus(P2000))
    assert gpu.ecc_volatile is None and gpu.ecc_aggregate is None
    assert gpu.active_clock_event_reasons == ("gpu_idle",)


def test_old_schema_counts_use_the_totals() -> None:
    text = corpus_text("nvidia-smi", P2000)
    volatile = text.index("<volatile>")
    single_total = text.index("<total>N/A</total>", volatile)
    text = text[:single_total] + "<total>5</total>" + text[single_total + 18:]
    double_total = text.index("<total>N/A</total>", single_total)
    text = text[:double_total] + "<total>2</total>" + text[double_total + 18:]
    gpu = only_gpu(parse_nvidia_smi(text))
    assert gpu.ecc_volatile is not None
    assert (gpu.ecc_volatile.correctable, gpu.ecc_volatile.uncorrectable) == (5, 2)


def test_k80_default_table() -> None:
    report = corpus(K80)
    assert report.logs[0].driver_version == "375.66" and report.logs[0].cuda_version is None
    assert [g.pci_bus_id for g in report.gpus] == [
        "0000:00:04.0", "0000:00:05.0", "0000:00:06.0", "0000:00:07.0"]
    assert [g.temperature_c for g in report.gpus] == [33, 46, 36, 46]
    assert [g.power_draw_w for g in report.gpus] == [26.0, 30.0, 26.0, 30.0]
    first = report.gpus[0]
    assert first.index == 0 and first.performance_state == "P8"
    assert first.ecc_volatile is not None and first.ecc_volatile.uncorrectable == 0


def test_h100_bundle_has_idle_and_load_snapshots() -> None:
    report = corpus(H100)
    idle, load = report.logs
    assert idle.driver_version == load.driver_version == "590.48.01"
    (idle_gpu,), (load_gpu,) = idle.gpus, load.gpus
    assert idle_gpu.pcie_replays == 9
    assert idle_gpu.active_clock_event_reasons == ("gpu_idle",)
    assert load_gpu.temperature_c == 59 and load_gpu.performance_state == "P0"
    assert load_gpu.power_draw_w is not None and load_gpu.power_draw_w > 500
    assert (load_gpu.pcie_gen_current, load_gpu.pcie_width_current) == (5, 16)
    assert load_gpu.ecc_volatile is not None and load_gpu.ecc_volatile.uncorrectable == 0
    assert load_gpu.remapped_rows_failure is False
    assert report.gpus == (load_gpu,)  # the latest state


def test_l40s_persistence_disabled() -> None:
    gpu = corpus(L40S).gpus[0]
    assert gpu.product_name == "NVIDIA L40S" and gpu.persistence_mode == "Disabled"


def test_older_query_text_names() -> None:
    gpu = only_gpu(parse_nvidia_smi(QUERY_TEXT))
    assert gpu.pci_bus_id == "00000000:3B:00.0" and gpu.serial == "1561920012345"
    assert gpu.clock_event_reasons == {"gpu_idle": False, "hw_slowdown": True,
                                       "hw_thermal_slowdown": True,
                                       "hw_power_brake_slowdown": False}
    assert gpu.ecc_volatile is not None and gpu.ecc_aggregate is not None
    assert (gpu.ecc_volatile.correctable, gpu.ecc_volatile.uncorrectable) == (2, 1)
    assert (gpu.ecc_aggregate.correctable, gpu.ecc_aggregate.uncorrectable) == (40, 1)
    assert (gpu.retired_pages_single_bit, gpu.retired_pages_double_bit) == (3, 1)
    assert gpu.retired_pages_pending is True
    assert (gpu.temperature_c, gpu.slowdown_temperature_c, gpu.shutdown_temperature_c) == (
        88, 87, 90)


def test_xml_failure_values_are_read() -> None:
    text = corpus_text("nvidia-smi", A10G)
    text = text.replace("<dram_uncorrectable>0</dram_uncorrectable>",
                        "<dram_uncorrectable>3</dram_uncorrectable>", 1)
    text = text.replace("<remapped_row_failure>No</remapped_row_failure>",
                        "<remapped_row_failure>Yes</remapped_row_failure>")
    gpu = only_gpu(parse_nvidia_smi(text))
    assert gpu.ecc_volatile is not None and gpu.ecc_volatile.uncorrectable == 3
    assert gpu.remapped_rows_failure is True


def test_no_devices() -> None:
    report = parse_nvidia_smi("No devices were found\n")
    assert report.gpus == ()


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty output"),
    ("Segmentation fault\n", "not nvidia-smi output"),
    ("<?xml version='1.0'?><other_log/>", "expected <nvidia_smi_log>"),
    ("<?xml version='1.0'?>\n<nvidia_smi_log>\n<gpu id='0'>\n", "truncated XML at line"),
    ("<nvidia_smi_log><gpu></nvidia_smi_log>", "invalid XML"),
    ("<nvidia_smi_log><gpu><serial>1</serial></gpu></nvidia_smi_log>", "no product name"),
    ("==============NVSMI LOG==============\nAttached GPUs : 2\n", "no GPU section follows"),
    ("| NVIDIA-SMI 375.66                 Driver Version: 375.66                    |\n"
     "|   0  Tesla K80           On   | 0000:00:04.0     Off |                    0 |\n",
     "without its temperature/power line"),
    ("| NVIDIA-SMI 375.66   Driver Version: 375.66  |\n", "no GPU rows"),
])
def test_malformed_input_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_nvidia_smi(text)
    assert info.value.tool == "nvidia-smi"


def _check(text: str) -> None:
    try:
        report = parse_nvidia_smi(text)
    except ParseError as error:
        assert error.tool == "nvidia-smi"
        return
    judge_nvidia_smi(report)


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _check(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from([T4, K80, RTX3080]))
def test_fuzz_mutated_capture(data: st.DataObject, name: str) -> None:
    text = corpus_text("nvidia-smi", name)
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 200)))
    _check(text[:start] + data.draw(st.text(max_size=30)) + text[end:])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_query_text(data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(QUERY_TEXT)))
    end = data.draw(st.integers(start, min(len(QUERY_TEXT), start + 120)))
    _check(QUERY_TEXT[:start] + data.draw(st.text(max_size=30)) + QUERY_TEXT[end:])
