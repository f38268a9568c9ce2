"""SMART: every disk's own health record, judged; a self-test; the snapshot that the
comparison after the stress stages starts from (harness/smart_snapshot.py)."""

from __future__ import annotations

import pytest

from harness.host import HostUnderTest
from harness.judge import SmartThresholds, Verdict
from harness.smart import read_all, run_self_tests
from harness.smart_snapshot import keep_before

pytestmark = [pytest.mark.stage, pytest.mark.smart]


def _limits(host: HostUnderTest) -> SmartThresholds:
    return SmartThresholds(strict=bool(host.params["strict"]))


def test_every_disk_reports_healthy(host: HostUnderTest) -> None:
    host.require("smartctl", "smartmontools")
    host.require("lsblk", "util-linux")
    readings = read_all(host, _limits(host))
    host.record("SMART verdicts", {r.disk.label: r.judgement for r in readings})
    keep_before(host, readings)  # the counters before the first stress stage
    for reading in readings:
        if reading.report is not None and reading.report.temperature_c is not None:
            host.measure(f"temperature_{reading.disk.path.rsplit('/', 1)[-1]}",
                         reading.report.temperature_c, "C")
    if not readings:
        pytest.skip("lsblk lists no disk: nothing to ask for SMART data")

    failing = [f.reason for r in readings for f in r.judgement.findings
               if f.verdict is Verdict.FAILING]
    assert not failing, "SMART: " + "; ".join(failing)
    unreadable = [r for r in readings if not r.readable]
    if unreadable:
        host.evidence.attach("disks without SMART data", "\n".join(
            f"{r.disk.label}: {r.judgement.reasons[0]}" for r in unreadable))
    assert not (unreadable and host.params["fail_unreadable"]), (
        "smart.fail_unreadable: no SMART data from " + "; ".join(
            f"{r.disk.label}: {r.judgement.reasons[0]}" for r in unreadable))
    if len(unreadable) == len(readings):
        pytest.skip("no disk answers SMART: " + "; ".join(
            f"{r.disk.label}: {r.judgement.reasons[0]}" for r in unreadable))


def test_self_test(host: HostUnderTest) -> None:
    p = host.params
    kind = p["self_test"]
    if kind == "none":
        pytest.skip("smart.self_test is none in this profile: no self-test")
    assert kind in ("short", "long"), (
        f"smart.self_test is {kind!r}; write short, long or none")
    host.require("smartctl", "smartmontools")
    disks = [r.disk for r in read_all(host, _limits(host)) if r.readable]
    if not disks:
        pytest.skip("no disk answers SMART: nothing to self-test")
    outcomes = run_self_tests(host, disks, kind, float(p["self_test_timeout_s"]),
                              float(p["self_test_poll_s"]), _limits(host))
    host.record("SMART self-tests", outcomes)
    failed = [o for o in outcomes if o.failed]
    assert not failed, f"{kind} self-test: " + "; ".join(
        f"{o.disk.label}: {o.outcome}: {o.detail}" for o in failed)
    if all(o.outcome == "not-supported" for o in outcomes):
        pytest.skip("no disk supports self-tests: " + "; ".join(
            f"{o.disk.label}: {o.detail}" for o in outcomes))
