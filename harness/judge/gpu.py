"""Judgement for NVIDIA GPUs from nvidia-smi (any of its formats, every snapshot in it).

Uncorrectable ECC errors, pages waiting to be retired and a failed row remap fail: the GPU
has lost data or can no longer repair its memory. Hardware or thermal clock slowdowns warn
(they fail with `throttle_fails`, for a stage that ran a load). A PCIe link narrower or slower
than the GPU's maximum warns only while the GPU is busy, because idle GPUs drop to a lower
link speed to save power (the A10G and Quadro samples sit at gen 1 when idle).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.judge.core import Judgement, Reasons, Verdict
from harness.probes.nvidia_smi import NvidiaGpu, NvidiaSmiReport

SLOWDOWN_REASONS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown",
                    "sw_thermal_slowdown")


@dataclass(frozen=True)
class GpuThresholds:
    ecc_uncorrectable_fail_above: int = 0
    retired_pages_warn_above: int = 0
    retired_pages_fail_at: int = 60  # NVIDIA's RMA guidance for dynamic page retirement
    remapped_uncorrectable_warn_above: int = 0
    pcie_replays_warn_above: int = 100
    throttle_fails: bool = False


def judge_nvidia_smi(report: NvidiaSmiReport, limits: GpuThresholds | None = None) -> Judgement:
    limits = limits or GpuThresholds()
    if not report.gpus:
        reasons = Reasons()
        reasons.warn("nvidia-smi lists no GPU (no NVIDIA device found, or the driver is not "
                     "loaded)")
        return reasons.judgement()
    return Judgement.merge([judge_gpu(gpu, limits) for log in report.logs for gpu in log.gpus])


def judge_gpu(gpu: NvidiaGpu, limits: GpuThresholds | None = None) -> Judgement:
    limits = limits or GpuThresholds()
    reasons = Reasons()
    name = gpu.label
    _ecc(gpu, limits, reasons)
    _retired(gpu, limits, reasons)
    _remapped(gpu, limits, reasons)
    slowdowns = [reason for reason in gpu.active_clock_event_reasons
                 if reason in SLOWDOWN_REASONS]
    if slowdowns:
        text = (f"{name}: clocks slowed down by {', '.join(slowdowns)}: check cooling, airflow "
                "and power delivery")
        reasons.add(Verdict.FAILING if limits.throttle_fails else Verdict.WARNING, text)
    if "sw_power_cap" in gpu.active_clock_event_reasons:
        reasons.note(f"{name}: clocks held at the software power cap (normal at full load)")
    _link(gpu, limits, reasons)
    if (gpu.temperature_c is not None and gpu.slowdown_temperature_c is not None
            and gpu.slowdown_temperature_c > 0 and gpu.temperature_c >= gpu.slowdown_temperature_c):
        reasons.warn(f"{name}: {gpu.temperature_c} C, at or above its slowdown temperature "
                     f"{gpu.slowdown_temperature_c} C")
    if gpu.ecc_mode == "Disabled":
        reasons.warn(f"{name}: ECC is disabled; enable it (nvidia-smi -e 1) for datacenter use")
    if gpu.persistence_mode == "Disabled":
        reasons.note(f"{name}: persistence mode is off; servers usually enable it "
                     "(nvidia-smi -pm 1 or nvidia-persistenced)")
    if not reasons.problems:
        ecc = "ECC not applicable" if gpu.ecc_volatile is None else "no uncorrectable ECC errors"
        reasons.note(f"{name}: {ecc}, no pending retirement or remap failure, no slowdown")
    return reasons.judgement()


def _ecc(gpu: NvidiaGpu, limits: GpuThresholds, reasons: Reasons) -> None:
    for scope, counts in (("volatile", gpu.ecc_volatile), ("aggregate", gpu.ecc_aggregate)):
        if counts is None:
            continue
        if counts.uncorrectable is not None and \
                counts.uncorrectable > limits.ecc_uncorrectable_fail_above:
            reasons.fail(f"{gpu.label}: {counts.uncorrectable} uncorrectable ECC errors "
                         f"({scope}{', since the last reset' if scope == 'volatile' else ''}): "
                         "the GPU memory lost data; RMA candidate")
        if counts.correctable:
            reasons.note(f"{gpu.label}: {counts.correctable} corrected ECC errors ({scope})")


def _retired(gpu: NvidiaGpu, limits: GpuThresholds, reasons: Reasons) -> None:
    if gpu.retired_pages_pending:
        reasons.fail(f"{gpu.label}: memory pages are waiting to be retired: reset or reboot, "
                     "then re-run; pages retired after uncorrectable errors mean RMA")
    retired = (gpu.retired_pages_single_bit or 0) + (gpu.retired_pages_double_bit or 0)
    if retired >= limits.retired_pages_fail_at:
        reasons.fail(f"{gpu.label}: {retired} retired memory pages (limit "
                     f"{limits.retired_pages_fail_at}): RMA")
    elif retired > limits.retired_pages_warn_above:
        reasons.warn(f"{gpu.label}: {retired} retired memory pages")


def _remapped(gpu: NvidiaGpu, limits: GpuThresholds, reasons: Reasons) -> None:
    if gpu.remapped_rows_failure:
        reasons.fail(f"{gpu.label}: a row remapping failed: the memory can no longer repair "
                     "itself; RMA")
    if gpu.remapped_rows_pending:
        reasons.warn(f"{gpu.label}: a row remap is pending: reset the GPU to apply it")
    unc = gpu.remapped_rows_uncorrectable
    if unc is not None and unc > limits.remapped_uncorrectable_warn_above:
        reasons.warn(f"{gpu.label}: {unc} rows remapped after uncorrectable errors")


def _busy(gpu: NvidiaGpu) -> bool:
    if gpu.clock_event_reasons.get("gpu_idle"):
        return False
    state = gpu.performance_state or ""
    return not (state.startswith("P") and state[1:].isdigit() and int(state[1:]) >= 8)


def _link(gpu: NvidiaGpu, limits: GpuThresholds, reasons: Reasons) -> None:
    width, width_max = gpu.pcie_width_current, gpu.pcie_width_max
    gen, gen_max = gpu.pcie_gen_current, gpu.pcie_gen_max
    narrow = width is not None and width_max is not None and width < width_max
    slow = gen is not None and gen_max is not None and gen < gen_max
    if narrow or slow:
        link = f"PCIe gen {gen} x{width} of gen {gen_max} x{width_max}"
        if _busy(gpu):
            reasons.warn(f"{gpu.label}: {link}: check the slot, riser or BIOS lane setting "
                         "(accept it if the platform wires this slot narrower)")
        else:
            reasons.note(f"{gpu.label}: {link} while idle (power saving); recheck under load")
    replays = gpu.pcie_replays
    if replays is not None and replays > limits.pcie_replays_warn_above:
        reasons.warn(f"{gpu.label}: {replays} PCIe replays since reset: a marginal link "
                     "(slot, riser, retimer)")
    elif replays:
        reasons.note(f"{gpu.label}: {replays} PCIe replays since reset (minor; watch whether "
                     "it grows)")
