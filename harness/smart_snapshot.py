"""The SMART snapshot before the stress stages, compared after the last of them.

The smart stage runs before cpu, memory, storage and gpu, so it keeps what every disk's
failure counters read then (host.facts and the store). Once the host's last test has run,
the counters are read again and compared with harness.judge.compare_smart: any growth of
reallocated/pending/uncorrectable sectors or NVMe media errors, or a new NVMe critical
warning, fails.

Why a plugin hook at the host's last test, and not a test: stages run in pipeline order
and a host's state only moves forward, so no test can run "after the stress stages" in
the smart stage's slot, and a test in a later stage's module (network, psu) would be
counted as that stage and disappear when only some stages are selected. The hook runs in
the teardown of the host's last selected test, before the host fixture releases a passed
host, and only when a stress stage ran since the snapshot. A growth fails that teardown
with one sentence per disk; the host is marked failed at stage `smart` first, so it is
kept up for a human, and a `smart` test result records the comparison.

Wiring: `pytest_plugins = ["harness.smart_snapshot"]` in harness/pytest_plugin.py (or
`-p harness.smart_snapshot` on the command line).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from harness.evidence import Evidence
from harness.host import HostUnderTest
from harness.judge import Judgement, Reasons, SmartThresholds, Verdict, compare_smart
from harness.probes.smartctl import SmartReport
from harness.smart import DiskReading, read_all
from harness.states import State

if TYPE_CHECKING:
    from harness.pytest_plugin import VetRun

FACT = "smart_snapshot"
#: The states of the stages that load the hardware (a snapshot compared after none is moot).
STRESS_STATES = frozenset({State.CPU_STRESS.value, State.MEMORY.value, State.STORAGE.value,
                           State.GPU.value})


@dataclass(frozen=True)
class SmartSnapshot:
    """Every disk that answered SMART, by serial (a disk's identity across renames)."""

    taken_at: float
    reports: Mapping[str, SmartReport]


def keep_before(host: HostUnderTest, readings: list[DiskReading]) -> SmartSnapshot:
    """Keep the counters of every readable disk with a serial as the 'before' snapshot."""
    reports = {r.serial: r.report for r in readings
               if r.readable and r.serial and r.report is not None}
    snapshot = SmartSnapshot(time.time(), reports)
    host.facts[FACT] = snapshot
    host.record("SMART snapshot before stress", snapshot)
    return snapshot


def compare_after(host: HostUnderTest, before: SmartSnapshot,
                  limits: SmartThresholds | None = None) -> Judgement:
    """Read every disk again and compare its counters with the snapshot, disk by disk."""
    after = {r.serial: r for r in read_all(host, limits) if r.serial}
    judgements = []
    for serial, old in sorted(before.reports.items()):
        new = after.get(serial)
        if new is None or new.report is None or not new.readable:
            reasons = Reasons()
            reasons.fail(f"{old.label}: answered SMART before the stress stages and does not "
                         "now (gone from the bus, or no longer readable): check dmesg and "
                         "the disk's cabling")
            judgements.append(reasons.judgement())
            continue
        judgements.append(compare_smart(old, new.report, limits))
    host.record("SMART snapshot after stress", SmartSnapshot(
        time.time(), {s: r.report for s, r in after.items() if r.report is not None}))
    judgement = Judgement.merge(judgements)
    host.record("SMART before/after comparison", judgement)
    return judgement


def failure_text(judgement: Judgement) -> str:
    failing = [f.reason for f in judgement.findings if f.verdict is Verdict.FAILING]
    return ("SMART counters grew during the stress stages (compared with the smart stage's "
            "snapshot): " + "; ".join(failing))


def _stressed_since_snapshot(run: VetRun, name: str) -> bool:
    states = [row["to_state"] for row in run.store.transitions(run.run_id, name)]
    if State.SMART.value not in states:
        return False
    after_smart = states[len(states) - 1 - states[::-1].index(State.SMART.value):]
    return any(state in STRESS_STATES for state in after_smart)


def check_after_stress(item: pytest.Item) -> str | None:
    """Run the comparison if `item` is its host's last test; the failure text, if any."""
    # Imported here: pytest imports this plugin before the vet plugin (`-p`), and an early
    # import would keep pytest from rewriting the vet plugin's asserts.
    from harness.pytest_plugin import RUN_KEY, item_host, move

    run = item.config.stash.get(RUN_KEY, None)
    name = item_host(item)
    if run is None or name is None or run.remaining[name] != 1 or name in run.failed:
        return None
    vetted = run.open_hosts.get(name)
    snapshot = vetted.facts.get(FACT) if vetted is not None else None
    if vetted is None or not isinstance(snapshot, SmartSnapshot) or not snapshot.reports:
        return None
    params = vetted.all_params.get("smart", {})
    if not params.get("compare_after_stress", True) or not _stressed_since_snapshot(run, name):
        return None
    stage, evidence = vetted.stage, vetted.evidence
    vetted.stage, vetted.evidence = "smart", Evidence(vetted.host_dir / "smart-after-stress")
    started = time.time()
    vetted.events.emit("harness", "smart-after-stress", disks=len(snapshot.reports))
    try:
        judgement = compare_after(vetted, snapshot,
                                  SmartThresholds(strict=bool(params.get("strict", False))))
    finally:
        vetted.stage, vetted.evidence = stage, evidence
    failed = judgement.verdict is Verdict.FAILING
    reason = failure_text(judgement) if failed else "; ".join(judgement.reasons)[:300]
    took = time.time() - started
    # Its end, too: what follows is the host's teardown (release or hold), not this check.
    vetted.events.emit("harness", "smart-after-stress-end", verdict=judgement.verdict.value,
                       duration_s=round(took, 3))
    run.store.record_test(run.run_id, name, "smart", f"{item.nodeid}::smart-after-stress",
                          "failed" if failed else "passed", started, took, reason[:300])
    if not failed:
        return None
    # Failed before the host fixture's teardown looks: a failed host is kept up.
    run.failed[name] = ("smart", reason[:300])
    move(run, name, State.FAILED, f"smart (after stress): {reason[:300]}", "smart")
    return reason


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, None, None]:
    """After the host's last test, before its fixtures go: the after-stress comparison."""
    failure = check_after_stress(item)
    result = yield
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    return result
