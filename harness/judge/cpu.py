"""Judgement for a stress-ng run: failures and verification errors fail the CPU/memory load."""

from __future__ import annotations

from harness.judge.core import Judgement, Reasons
from harness.probes.stress_ng import StressNgResult


def judge_stress_ng(result: StressNgResult) -> Judgement:
    reasons = Reasons()
    if result.failed:
        reasons.fail(f"stress-ng: {result.failed} stressor(s) failed")
    for line in result.verification_failures[:5]:
        reasons.fail(f"stress-ng: {line}")
    if result.completed_ok is False:
        reasons.fail("stress-ng: the run did not complete successfully")
    if result.untrustworthy:
        reasons.warn(f"stress-ng: {result.untrustworthy} stressor(s) have untrustworthy metrics")
    if not reasons.problems:
        ops = ", ".join(f"{s.name} {s.bogo_ops_per_s_real:.0f} bogo-ops/s"
                        for s in result.stressors[:4])
        reasons.note("stress-ng: no failure, no verification error" + (f"; {ops}" if ops else ""))
    return reasons.judgement()
