"""GPU: nvidia-smi inventory, ECC, retired pages / row remapping, throttle reasons; a load for
the profile's duration (gpu_burn, or gpu.load_command) with temperatures and clocks
sampled; NVIDIA XIDs the kernel logged meanwhile."""

from __future__ import annotations

import pytest

from harness.errors import ToolMissing
from harness.host import HostUnderTest
from harness.judge import GpuThresholds, Judgement, Verdict, judge_nvidia_smi
from harness.kernel_window import KernelWindow
from harness.models import ExpectedGpu
from harness.probes import ParseError
from harness.probes.gpu_burn import parse_gpu_burn
from harness.probes.lspci import parse_lspci_nn
from harness.probes.nvidia_smi import NvidiaGpu, parse_nvidia_smi
from harness.sampling import sampled

pytestmark = [pytest.mark.stage, pytest.mark.gpu]

#: PCI classes of GPUs: VGA, 3D controller, other display controller.
GPU_CLASSES = ("0300", "0302", "0380")


def _expected(gpus: tuple[ExpectedGpu, ...]) -> str:
    return ", ".join(f"{g.count} x {g.model!r}" for g in gpus)


def _missing(expected: tuple[ExpectedGpu, ...], found: tuple[NvidiaGpu, ...]) -> list[str]:
    """Each expected model with fewer GPUs whose product name contains it than expected."""
    missing = []
    for gpu in expected:
        have = [g for g in found if gpu.model.lower() in (g.product_name or "").lower()]
        if len(have) < gpu.count:
            missing.append(f"the spec expects {gpu.count} x {gpu.model!r}, nvidia-smi lists "
                           f"{len(have)}")
    return missing


def _load_command(host: HostUnderTest) -> tuple[str, str] | None:
    """(tool, command) for the load, or None when the host has none."""
    p = host.params
    duration = int(p["duration_s"])
    if p["load_command"]:
        return "load_command", str(p["load_command"]).replace("{duration_s}", str(duration))
    if host.run("command -v gpu_burn", attach=False).ok:
        # gpu_burn reads compare.ptx from its working directory: run it from its own.
        return "gpu_burn", f'cd "$(dirname "$(command -v gpu_burn)")" && gpu_burn {duration}'
    return None


def test_gpus_healthy_under_load(host: HostUnderTest) -> None:
    p = host.params
    expected = host.expected.gpus
    host.require("lspci", "pciutils")
    pci = [d for d in parse_lspci_nn(host.run("lspci -nn -d 10de:", check=True).stdout)
           if (d.class_id or "")[:4] in GPU_CLASSES]
    has_smi = host.run("command -v nvidia-smi", attach=False).ok
    if not pci and not has_smi:
        assert not expected, (f"expected GPU missing: the spec expects {_expected(expected)}; "
                              "no NVIDIA GPU on the PCI bus (lspci) and no nvidia-smi")
        pytest.skip("no GPU expected (vet_spec.gpus is empty) and none found: no NVIDIA "
                    "device on the PCI bus, no nvidia-smi")
    if not has_smi:
        raise ToolMissing.for_tool(host.name, "nvidia-smi", "nvidia-smi")

    window = KernelWindow.open(host)
    query = host.run("nvidia-smi -q -x", timeout=120)
    if not query.ok and not pci and not expected:
        pytest.skip("no GPU expected and none found: no NVIDIA device on the PCI bus; "
                    f"nvidia-smi says: {(query.stdout or query.stderr).strip()[-200:]}")
    assert query.ok, (f"nvidia-smi exited {query.exit_status} with {len(pci)} NVIDIA GPU(s) "
                      f"on the PCI bus: {(query.stdout or query.stderr).strip()[-300:]}")
    idle = parse_nvidia_smi(query.stdout)
    host.record("nvidia-smi before the load", idle)
    if not idle.gpus and not expected:
        pytest.skip("no GPU expected (vet_spec.gpus is empty) and nvidia-smi lists none")
    missing = _missing(expected, idle.gpus)
    assert not missing, "expected GPU missing: " + "; ".join(missing) + " (" + ", ".join(
        g.label for g in idle.gpus) + ")"
    limits = GpuThresholds(throttle_fails=bool(p["throttle_fails"]))
    judgements = [judge_nvidia_smi(idle, limits)]

    load = _load_command(host)
    if load is None:
        host.record("GPU load", {"tool": None, "note": "no load tool: gpu_burn is not "
                                 "installed and gpu.load_command is not set; health checked "
                                 "without load"})
    else:
        tool, command = load
        duration = int(p["duration_s"])
        with host.scratch_path("/tmp", "nvidia-smi-samples.txt") as samples_path:
            with host.ticking(duration, f"{tool} on {len(idle.gpus)} GPU(s)"):
                result = host.run(sampled(command, "nvidia-smi -q", p["sample_s"],
                                          samples_path), timeout=duration + 300)
            samples_text = host.run(f"cat {samples_path}", attach=False).stdout
        if samples_text.strip():
            samples = parse_nvidia_smi(samples_text)
            host.record("nvidia-smi during the load", samples)
            judgements.append(judge_nvidia_smi(samples, limits))
            for gpu in (g for log in samples.logs for g in log.gpus):  # over time
                name = f"gpu{gpu.index if gpu.index is not None else gpu.pci_bus_id}"
                if gpu.temperature_c is not None:
                    host.measure(f"{name}_temperature", gpu.temperature_c, "C")
                if gpu.sm_clock_mhz is not None:
                    host.measure(f"{name}_sm_clock", gpu.sm_clock_mhz, "MHz")
                if gpu.power_draw_w is not None:
                    host.measure(f"{name}_power", gpu.power_draw_w, "W")
        if tool == "gpu_burn":
            try:
                faulty = parse_gpu_burn(result.stdout).faulty
            except ParseError as exc:
                raise AssertionError(f"gpu_burn gave no result (exit {result.exit_status}): "
                                     f"{exc}") from None
            assert not faulty, f"gpu_burn: GPU(s) {faulty} computed wrong results: FAULTY"
        assert result.exit_status == 0, (
            f"the GPU load ({tool}) exited {result.exit_status}: "
            f"{(result.stderr or result.stdout).strip()[-300:]}")
        after = parse_nvidia_smi(host.run("nvidia-smi -q -x", timeout=120, check=True).stdout)
        host.record("nvidia-smi after the load", after)
        judgements.append(judge_nvidia_smi(after, limits))

    judgements.append(window.judge())  # NVIDIA XIDs, judged by class
    judgement = Judgement.merge(judgements)
    host.record("GPU judgement", judgement)
    failing = [f.reason for f in judgement.findings if f.verdict is Verdict.FAILING]
    assert not failing, "GPU: " + "; ".join(failing)
