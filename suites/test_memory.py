"""Memory: stress-ng vm stressors with verification (or memtester) over MemAvailable minus a
reserve; the EDAC error counters before and after; hardware errors the kernel logged."""

from __future__ import annotations

import pytest

from harness.host import HostUnderTest
from harness.judge import (
    EdacThresholds,
    KernelLogThresholds,
    Verdict,
    compare_edac,
    judge_stress_ng,
)
from harness.kernel_window import KernelWindow
from harness.probes.edac import EDAC_COMMAND, EdacCounters, parse_edac
from harness.probes.meminfo import parse_meminfo
from harness.probes.stress_ng import parse_stress_ng, parse_stress_ng_yaml

pytestmark = [pytest.mark.stage, pytest.mark.memory]


def _edac(host: HostUnderTest) -> EdacCounters:
    return parse_edac(host.run(EDAC_COMMAND, timeout=30).stdout)


def test_memory_stress_with_verification(host: HostUnderTest) -> None:
    p = host.params
    tool = p["tool"]
    assert tool in ("stress-ng", "memtester"), (
        f"memory.tool is {tool!r}; write stress-ng or memtester")
    host.require(tool)
    available = parse_meminfo(host.run("cat /proc/meminfo", check=True).stdout)["MemAvailable"]
    available_mib = available // 2**20
    # The reserve is kept for the OS, but never more than half of what is available.
    size_mib = available_mib - min(int(p["reserve_mib"]), available_mib // 2)
    if p["max_mib"]:
        size_mib = min(size_mib, int(p["max_mib"]))
    assert size_mib >= 16, (
        f"only {available_mib} MiB of memory available on the host: too little to test")
    host.measure("tested_memory", size_mib * 2**20, "bytes")
    edac_before = _edac(host)
    window = KernelWindow.open(host)

    if tool == "memtester":
        with host.ticking(None, f"memtester {size_mib} MiB, one pass"):
            result = host.run(f"memtester {size_mib}M 1", timeout=max(600, size_mib))
        assert result.exit_status == 0, (
            f"memtester found errors in {size_mib} MiB (exit status {result.exit_status}: "
            f"{result.stdout.strip()[-300:]})")
    else:
        workers = int(p["workers"]) or int(host.run("nproc", check=True).stdout.strip())
        per_worker = max(8, size_mib // workers)
        duration = int(p["duration_s"])
        with host.scratch_path("/tmp", "stress-ng-vm.yaml") as yaml_path, \
                host.ticking(duration, f"{workers} vm workers x {per_worker} MiB"):
            result = host.run(
                f"stress-ng --vm {workers} --vm-bytes {per_worker}M --vm-method "
                f"{p['vm_method']} --verify --timeout {duration}s --metrics --yaml {yaml_path}",
                timeout=duration + 180)
            metrics_yaml = host.run(f"cat {yaml_path}").stdout
        log = parse_stress_ng(result.stdout + result.stderr)
        metrics = parse_stress_ng_yaml(metrics_yaml) if metrics_yaml.strip() else log
        host.record("stress-ng metrics", metrics)
        for stressor in metrics.stressors:
            host.measure(f"{stressor.name}_bogo_ops_per_s", stressor.bogo_ops_per_s_real,
                         "ops/s")
        stress = judge_stress_ng(log)
        assert stress.verdict is not Verdict.FAILING, "; ".join(stress.reasons)
        assert result.exit_status == 0, (
            f"stress-ng exited {result.exit_status} (2: a stressor failed, 3: out of "
            f"resources, 5: killed by a signal, e.g. the OOM killer: raise "
            f"memory.reserve_mib): {result.stderr.strip()[-300:]}")

    edac = compare_edac(edac_before, _edac(host), EdacThresholds(
        ce_warn_above=int(p["ce_warn_above"])))
    kernel = window.judge(KernelLogThresholds(
        corrected_warn_above=int(p["corrected_warn_above"])))
    host.record("memory error judgement", {"edac": edac, "kernel log": kernel})
    problems = [f.reason for f in edac.findings + kernel.findings
                if f.verdict is Verdict.FAILING]
    assert not problems, "memory errors during the test: " + "; ".join(problems)
