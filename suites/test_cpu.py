"""CPU: stress-ng with verification for the profile's duration; machine checks, hardware
errors and thermal throttling logged meanwhile fail; temperatures recorded over time."""

from __future__ import annotations

import pytest

from harness.host import HostUnderTest
from harness.judge import KernelLogThresholds, Verdict
from harness.kernel_window import KernelWindow
from harness.probes.stress_ng import parse_stress_ng, parse_stress_ng_yaml
from harness.probes.thermal import THERMAL_COMMAND, parse_thermal
from harness.sampling import sampled

pytestmark = [pytest.mark.stage, pytest.mark.cpu]


def test_stress_with_verification(host: HostUnderTest) -> None:
    p = host.params
    host.require("stress-ng")
    workers = p["workers_per_stressor"]
    stressors = " ".join(f"--{name} {workers}" for name in p["stressors"])
    window = KernelWindow.open(host)
    with host.scratch_paths("/tmp", "stress-ng.yaml", "temperatures.txt") as (
            yaml_path, temperatures_path):
        with host.ticking(p["duration_s"], f"stress-ng {' '.join(p['stressors'])}"):
            result = host.run(
                sampled(f"stress-ng {stressors} --timeout {p['duration_s']}s --verify "
                        f"--metrics --yaml {yaml_path}", THERMAL_COMMAND,
                        p["temperature_sample_s"], temperatures_path),
                timeout=p["duration_s"] + 120,
            )
        metrics_yaml = host.run(f"cat {yaml_path}").stdout
        temperatures = parse_thermal(host.run(f"cat {temperatures_path}").stdout)
    log = parse_stress_ng(result.stdout + result.stderr)
    metrics = parse_stress_ng_yaml(metrics_yaml) if metrics_yaml.strip() else log
    host.record("stress-ng metrics", metrics)
    for stressor in metrics.stressors:
        host.measure(f"{stressor.name}_bogo_ops_per_s", stressor.bogo_ops_per_s_real, "ops/s")
    host.record("temperatures", temperatures if temperatures.available else
                {"available": False, "note": "no temperature sensor on this host (a VM?)"})
    for series in temperatures.series:
        host.measure(f"max_temperature_{series.sensor}", series.max_c, "C")

    assert not log.verification_failures, "verification failed: " + "; ".join(
        log.verification_failures[:3])
    assert result.exit_status == 0, (
        f"stress-ng exited {result.exit_status} (2: a stressor failed, 3: out of resources, "
        f"5: killed by a signal): {result.stderr.strip()[-300:]}")
    assert metrics.stressors, "stress-ng reported no metrics"
    assert all(s.bogo_ops > 0 for s in metrics.stressors), "a stressor did no work"
    kernel = window.judge(KernelLogThresholds(thermal_fails=bool(p["thermal_fails"])))
    logged = [f.reason for f in kernel.findings if f.verdict is Verdict.FAILING]
    assert not logged, "hardware errors logged during the CPU stress: " + "; ".join(logged)
