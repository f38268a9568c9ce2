"""CPU: stress-ng with verification for the profile's duration."""

from __future__ import annotations

import pytest

from harness.host import HostUnderTest
from harness.probes.stress_ng import parse_stress_ng, parse_stress_ng_yaml

pytestmark = [pytest.mark.stage, pytest.mark.cpu]


def test_stress_with_verification(host: HostUnderTest) -> None:
    p = host.params
    host.require("stress-ng")
    workers = p["workers_per_stressor"]
    stressors = " ".join(f"--{name} {workers}" for name in p["stressors"])
    with host.scratch_path("/tmp", "stress-ng.yaml") as yaml_path:
        result = host.run(
            f"stress-ng {stressors} --timeout {p['duration_s']}s --verify --metrics "
            f"--yaml {yaml_path}",
            timeout=p["duration_s"] + 120,
        )
        metrics_yaml = host.run(f"cat {yaml_path}").stdout
    log = parse_stress_ng(result.stdout + result.stderr)
    metrics = parse_stress_ng_yaml(metrics_yaml) if metrics_yaml.strip() else log
    host.record("stress-ng metrics", metrics)
    for stressor in metrics.stressors:
        host.measure(f"{stressor.name}_bogo_ops_per_s", stressor.bogo_ops_per_s_real, "ops/s")

    assert not log.verification_failures, "verification failed: " + "; ".join(
        log.verification_failures[:3])
    assert result.exit_status == 0, (
        f"stress-ng exited {result.exit_status} (2: a stressor failed, 3: out of resources, "
        f"5: killed by a signal): {result.stderr.strip()[-300:]}")
    assert metrics.stressors, "stress-ng reported no metrics"
    assert all(s.bogo_ops > 0 for s in metrics.stressors), "a stressor did no work"
