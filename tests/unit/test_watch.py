"""ConsoleWatch: death strings, reboots through the tracker, waking a stage, console slices."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.console.boot import BootPolicy, BootTracker, Finding, Step, required_literals
from harness.console.watch import DEATH_PATTERNS, ConsoleWatch, DeathPattern
from harness.models import Severity
from tests.unit.corpus_paths import SHARED

DATA = Path(__file__).resolve().parents[1] / "data" / "boot"


def transcript(name: str) -> list[str]:
    return (DATA / name).read_bytes().decode("utf-8").split("\n")[:-1]


# As the kernel (and the NVIDIA driver) print them on the console.
DEATH_LINES = [
    ("[  123.456789] Kernel panic - not syncing: Fatal exception", "panic"),
    ("[  123.457001] ---[ end Kernel panic - not syncing: Fatal exception ]---", "panic"),
    ("[   61.000102] Kernel panic - not syncing: Hard LOCKUP", "panic"),
    ("[    2.300000] mce: [Hardware Error]: Machine check events logged", "machine-check"),
    ("[ 4411.201122] mce: [Hardware Error]: CPU 3: Machine Check: 0 Bank 5: bea0000000000108",
     "machine-check"),
    ("[ 4411.201340] mce: [Hardware Error]: CPU 0: Machine Check Exception: 5 Bank 4: "
     "b200000000070005", "machine-check"),
    ("[ 3121.400012] Memory failure: 0x1d3c5a: recovery action for dirty LRU page: Recovered",
     "machine-check"),
    ("[    7.100020] {1}[Hardware Error]: Hardware error from APEI Generic Hardware Error "
     "Source: 0", "hardware-error"),
    ("[    9.200301] mce: Uncorrected hardware memory error in user-access at 1d3c5a400",
     "hardware-error"),
    ("[  812.300110] EDAC MC0: 1 UE memory read error on CPU_SrcID#0_MC#0_Chan#1_DIMM#0 "
     "(channel:1 slot:0 page:0x12a3f offset:0x0 grain:32 - err_code:0x0000:0x009f "
     "SystemAddress:0x12a3f000 ProcessorSocketId:0x0 MemoryControllerId:0x0)", "edac-ue"),
    ("[  812.400220] EDAC MC0: 1 CE memory read error on CPU_SrcID#0_MC#0_Chan#0_DIMM#0 "
     "(channel:0 slot:0 page:0x8b5e2 offset:0x0 grain:32 syndrome:0x0)", "edac-ce"),
    ("[   77.100001] EDAC MC1: 1 CE on mc#1csrow#3channel#0 (csrow:3 channel:0 page:0x7f3a1 "
     "offset:0x5c0 grain:64 syndrome:0x4e1c)", "edac-ce"),
    ("[    5.100000] BUG: kernel NULL pointer dereference, address: 0000000000000008", "bug"),
    ("[    5.200000] BUG: unable to handle page fault for address: ffffa0d3c0000000", "bug"),
    ("[    5.300000] Oops: 0000 [#1] PREEMPT SMP NOPTI", "oops"),
    ("[    5.400000] general protection fault, probably for non-canonical address "
     "0xdead000000000108: 0000 [#1] PREEMPT SMP NOPTI", "general-protection-fault"),
    ("[    1.100000] traps: stress-ng[1234] general protection fault ip:55d0c2a1b2c3 "
     "sp:7ffd12345678 error:0 in stress-ng[55d0c2a00000+1a000]", "user-gpf"),
    ("[    9.900000] Out of memory: Killed process 1234 (stress-ng) total-vm:4194304kB, "
     "anon-rss:3936512kB, file-rss:4kB, shmem-rss:0kB, UID:0 pgtables:7748kB "
     "oom_score_adj:1000", "oom"),
    ("[    9.800000] stress-ng invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|"
     "__GFP_COMP), order=0, oom_score_adj=1000", "oom"),
    ("[    9.700000] Memory cgroup out of memory: Killed process 4321 (stress-ng-vm) "
     "total-vm:1048576kB", "oom"),
    ("[   52.100000] watchdog: BUG: soft lockup - CPU#3 stuck for 23s! [stress-ng-cpu:2212]",
     "soft-lockup"),
    ("[   60.200000] NMI watchdog: Watchdog detected hard LOCKUP on cpu 5", "hard-lockup"),
    ("[  120.500000] rcu: INFO: rcu_sched self-detected stall on CPU", "rcu-stall"),
    ("[  120.600000] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", "rcu-stall"),
    ("[  300.100000] Uhhuh. NMI received for unknown reason 2d on CPU 0.", "nmi"),
    ("[  300.200000] NMI: PCI system error (SERR) for reason a1 on CPU 0.", "nmi"),
    ("[   99.100000] pcieport 0000:00:01.1: PCIe Bus Error: severity=Uncorrected (Fatal), "
     "type=Transaction Layer, (Receiver ID)", "pcie-fatal"),
    ("[   99.200000] pcieport 0000:00:01.1: PCIe Bus Error: severity=Corrected, "
     "type=Physical Layer, (Receiver ID)", "pcie-corrected"),
    ("[   99.300000] NVRM: Xid (PCI:0000:c1:00): 79, pid=2231, name=nvidia-smi, GPU has fallen "
     "off the bus.", "gpu-lost"),
    ("[   99.400000] NVRM: Xid (PCI:0000:c1:00): 13, pid=2231, name=python3, Graphics "
     "Exception: ESR 0x404600=0x80000001", "gpu-xid"),
    ("[  245.800000] INFO: task fio:3311 blocked for more than 120 seconds.", "hung-task"),
]

# Healthy boot lines that look close to a death string.
HEALTHY_LINES = [
    "[    0.309779] NMI watchdog: Perf NMI watchdog permanently disabled",
    "[    0.322993] NMI watchdog: Enabled. Permanently consumes one hw-PMU counter.",
    "[    0.008806] ACPI: X2APIC_NMI (uid[0xffffffff] high edge lint[0x1])",
    "[   16.366455] kvm_amd: Virtual NMI enabled",
    "[    3.329005] EDAC MC: Ver: 3.0.0",
    "[   16.431587] EDAC MC: UMC0 chip selects:",
    "[   16.431583] EDAC amd64: F19h_M10h detected (node 0).",
    "[   16.405248] MCE: In-kernel MCE decoding enabled.",
    "[    0.071512] mce: CPU0: Thermal monitoring enabled (TM1)",
    "[    0.812001] RAS: Correctable Errors collector initialized.",
    "[    3.594712] ERST: Error Record Serialization Table (ERST) support is initialized.",
    "[    3.594001] HEST: Table parsing has been initialized.",
    "[    3.595002] GHES: APEI firmware first mode is enabled by APEI bit.",
    "[    2.298960] pci 0000:e1:00.0: DOE: [2c8] failed to create mailbox: -5",
    "[    5.099666] i40e 0000:02:00.0: PCI-Express bandwidth available for this device may be "
    "insufficient for optimal performance.",
    "[    4.952994] i40e: module verification failed: signature and/or required key missing - "
    "tainting kernel",
    "[    0.312088] MMIO Stale Data CPU bug present and SMT on, data leak possible.",
    "[    1.262729] acpi PNP0A08:00: _OSC: platform does not support [AER LTR DPC]",
    "[    1.300100] pcieport 0000:00:01.1: AER: enabled with IRQ 28",
    "[    0.162152] rcu: RCU calculated value of scheduler-enlistment delay is 101 jiffies.",
    "[    2.042271] EXT4-fs (sda1): re-mounted. Opts: discard,errors=remount-ro",
    "[    1.473037] systemd[1]: Installed transient /etc/machine-id file.",
    "Machine UUID 8d5b6e2a-3c1f-4e7a-9b0d-2f6a1c3e5d7b",
]


# ------------------------------------------------------------------ death strings


@pytest.mark.parametrize(("line", "kind"), DEATH_LINES)
def test_each_death_string_is_recognised(line: str, kind: str) -> None:
    watch = ConsoleWatch(host="node07")
    findings = watch.feed(line, 5.0)
    assert [f.kind for f in findings] == [kind]
    finding = findings[0]
    assert finding.message.startswith(f"node07: {kind} on the console: ")
    assert finding.evidence == (line,) and finding.at == 5.0
    expected = next(p.severity for p in DEATH_PATTERNS if p.name == kind)
    assert finding.severity is expected
    assert (watch.death is finding) is (expected is Severity.CRITICAL)


def test_every_death_pattern_has_a_test_line() -> None:
    assert {kind for _, kind in DEATH_LINES} == {p.name for p in DEATH_PATTERNS}


def test_every_death_pattern_is_prefiltered() -> None:
    for pattern in DEATH_PATTERNS:
        assert required_literals(pattern.regex) is not None, pattern.name


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_every_text_a_death_pattern_matches_contains_its_literal(data: st.DataObject) -> None:
    pattern = data.draw(st.sampled_from(DEATH_PATTERNS))
    text = data.draw(st.from_regex(re.compile(pattern.regex), fullmatch=True))
    literals = required_literals(pattern.regex)
    assert literals is not None and any(lit in text for lit in literals)


@pytest.mark.parametrize("line", HEALTHY_LINES)
def test_healthy_lines_that_look_close_are_not_deaths(line: str) -> None:
    assert ConsoleWatch().feed(line, 0.0) == []


def test_a_healthy_debian_vm_boot_gives_no_finding() -> None:
    lines = (DATA / "gce-vm_debian-5.10_boot-dmesg.txt").read_text(encoding="utf-8").splitlines()
    watch = ConsoleWatch()
    assert watch.feed_lines(lines, 0.0) == []
    assert [f for line in lines for f in watch.feed(line, 0.0)] == []


def test_a_healthy_supermicro_boot_with_warnings_gives_no_death() -> None:
    path = SHARED / "kernel-log" / "supermicro-as-4125gs-tnrt_2x-h100l_rocky9_boot-dmesg.txt"
    if not path.is_file():
        pytest.skip(f"{path} is not available (no licence to bundle it)")
    lines = path.read_text(encoding="utf-8").splitlines()
    watch = ConsoleWatch()
    assert watch.feed_lines(lines, 0.0) == []
    assert [f for line in lines for f in watch.feed(line, 0.0)] == []


def test_a_healthy_qemu_boot_gives_no_finding_with_a_tracker() -> None:
    watch = ConsoleWatch(tracker=BootTracker("node07"))
    for n, line in enumerate(transcript("qemu-pxe-boot.txt")):
        assert watch.feed(line, float(n)) == []
    assert watch.tracker is not None and watch.tracker.step is Step.READY
    assert watch.death is None


def test_a_panic_trace_is_reported_line_by_line_and_the_first_critical_is_the_death() -> None:
    watch = ConsoleWatch(tracker=BootTracker("node07"))
    watch.feed_lines(transcript("qemu-pxe-boot.txt"), 0.0)
    watch.feed_lines(transcript("kernel-panic-trace.txt"), 10.0)
    assert watch.counts == {"bug": 1, "oops": 1, "panic": 2}  # none twice via the tracker
    assert watch.death is not None and watch.death.kind == "bug"
    assert watch.death.step is Step.READY


def test_operators_can_add_a_death_pattern() -> None:
    patterns = [*DEATH_PATTERNS, DeathPattern("ipmi-sel", r"ipmi_si .*SEL full", Severity.WARNING)]
    watch = ConsoleWatch(patterns)
    assert [f.kind for f in watch.feed("[ 4.1] ipmi_si IPI0001:00: SEL full", 0)] == ["ipmi-sel"]


# ------------------------------------------------------------------ reboots through the tracker


def test_an_unexpected_reboot_while_stages_run_is_a_death() -> None:
    watch = ConsoleWatch(tracker=BootTracker("node07"))
    lines = transcript("qemu-pxe-boot.txt")
    watch.feed_lines(lines, 0.0)
    assert watch.death is None
    findings = watch.feed(lines[0], 60.0)
    assert [f.kind for f in findings] == ["unexpected-reboot"]
    assert watch.death is findings[0]


def test_an_expected_reboot_is_not_a_death() -> None:
    tracker = BootTracker("node07", BootPolicy(allowed_reboots=1))
    watch = ConsoleWatch(tracker=tracker)
    watch.feed_lines(transcript("qemu-pxe-boot.txt") * 2, 0.0)
    assert watch.death is None and tracker.reboots == 1


def test_deadlines_can_be_checked_from_another_thread_while_no_line_arrives() -> None:
    tracker = BootTracker("node07", BootPolicy(deadlines={Step.USERSPACE: 30.0}))
    watch = ConsoleWatch(tracker=tracker)
    lines = [ln for ln in transcript("qemu-pxe-boot.txt") if "VET-READY" not in ln]
    watch.feed_lines(lines, 0.0)
    assert watch.check_deadlines(29.0) == []
    assert [f.kind for f in watch.check_deadlines(31.0)] == ["deadline"]
    assert watch.death is not None and "no VET-READY announce" in watch.death.message
    assert ConsoleWatch().check_deadlines(10**9) == []


# ------------------------------------------------------------------ waking the stage


def test_wait_for_death_returns_within_a_second_of_the_line() -> None:
    watch = ConsoleWatch(host="node07")
    fed_at: list[float] = []
    go = threading.Event()

    def reader() -> None:
        go.wait(10)
        for line in transcript("qemu-pxe-boot.txt"):
            watch.feed(line)
        fed_at.append(time.monotonic())
        watch.feed("[  123.456789] Kernel panic - not syncing: Fatal exception")

    thread = threading.Thread(target=reader)
    thread.start()
    go.set()
    death = watch.wait_for_death(timeout=30)
    woke_at = time.monotonic()
    thread.join(10)
    assert death is not None and death.kind == "panic"
    assert woke_at - fed_at[0] < 1.0


def test_wait_for_death_times_out_with_none_and_warnings_do_not_wake_it() -> None:
    watch = ConsoleWatch()
    watch.feed("[ 99.2] pcieport 0000:00:01.1: PCIe Bus Error: severity=Corrected, type=Physical")
    started = time.monotonic()
    assert watch.wait_for_death(timeout=0.05) is None
    assert time.monotonic() - started < 5
    assert [f.kind for f in watch.findings] == ["pcie-corrected"]


def test_callbacks_get_each_finding_before_feed_returns() -> None:
    watch = ConsoleWatch()
    got: list[Finding] = []
    unsubscribe = watch.on_finding(got.append)
    watch.feed("[ 9.9] Out of memory: Killed process 1234 (stress-ng)")
    assert [f.kind for f in got] == ["oom"]
    unsubscribe()
    unsubscribe()  # twice is harmless
    watch.feed("[ 9.9] Out of memory: Killed process 1235 (stress-ng)")
    assert len(got) == 1


def test_a_failing_callback_does_not_stop_the_others_or_the_reader(
        caplog: pytest.LogCaptureFixture) -> None:
    watch = ConsoleWatch()
    got: list[str] = []

    def broken(finding: Finding) -> None:
        raise RuntimeError("stage already gone")

    watch.on_finding(broken)
    watch.on_finding(lambda f: got.append(f.kind))
    with caplog.at_level(logging.ERROR, logger="harness.console.watch"):
        findings = watch.feed("[ 5.3] Oops: 0000 [#1] PREEMPT SMP NOPTI")
    assert [f.kind for f in findings] == ["oops"] and got == ["oops"]
    assert "console watch callback failed on oops" in caplog.text


def test_a_callback_may_call_back_into_the_watch() -> None:
    watch = ConsoleWatch()
    seen: list[int] = []
    watch.on_finding(lambda f: seen.append(len(watch.findings)))
    watch.feed("[ 5.3] Oops: 0000 [#1] PREEMPT SMP NOPTI")
    assert seen == [1]


# ------------------------------------------------------------------ slices and memory


def test_a_stage_gets_its_own_slice_of_the_console() -> None:
    watch = ConsoleWatch()
    watch.feed_lines(["boot 1", "boot 2"], 0.0, log_offset=14)
    start = watch.mark()
    watch.feed("stage line 1", 1.0, log_offset=27)
    watch.feed_lines(["stage line 2", "stage line 3"], 2.0, log_offset=53)
    end = watch.mark()
    watch.feed("after", 3.0, log_offset=59)
    part = watch.slice(start, end)
    assert part.lines == ("stage line 1", "stage line 2", "stage line 3")
    assert part.dropped == 0
    assert (part.start.log_offset, part.end.log_offset) == (14, 53)
    assert watch.slice(end).lines == ("after",)
    assert watch.slice(start, start).lines == ()


def test_a_slice_older_than_the_ring_says_how_much_is_only_in_the_log_file() -> None:
    watch = ConsoleWatch(ring_lines=10)
    start = watch.mark()
    for n in range(25):
        watch.feed(f"line {n}", float(n), log_offset=(n + 1) * 8)
    part = watch.slice(start)
    assert part.lines == tuple(f"line {n}" for n in range(15, 25))
    assert part.dropped == 15
    assert part.start.log_offset is None and part.end.log_offset == 200


def test_evidence_is_the_tail_up_to_the_line_not_after_it() -> None:
    watch = ConsoleWatch(evidence_lines=3)
    lines = ["a", "b", "c", "[ 1.0] Kernel panic - not syncing: x", "d", "e"]
    watch.feed("before", 0.0)
    [finding] = watch.feed_lines(lines, 1.0)
    assert finding.evidence == ("b", "c", "[ 1.0] Kernel panic - not syncing: x")


def test_evidence_spans_many_reads_in_order() -> None:
    watch = ConsoleWatch()
    for n in range(200):
        watch.feed(f"line {n}", float(n))
    watch.feed_lines(["line 200", "line 201"], 200.0)
    [finding] = watch.feed("[ 9.9] Out of memory: Killed process 1234 (stress-ng)", 201.0)
    assert finding.evidence[:-1] == tuple(f"line {n}" for n in range(153, 202))
    assert len(finding.evidence) == 50


def test_findings_are_bounded_but_counted() -> None:
    watch = ConsoleWatch(max_findings=5)
    storm = [f"[ {n}.0] EDAC MC0: 1 CE memory read error on DIMM#0" for n in range(1000)]
    watch.feed_lines(storm, 0.0)
    assert len(watch.findings) == 5 and watch.counts["edac-ce"] == 1000


def test_memory_stays_bounded_over_a_million_lines() -> None:
    dmesg = (DATA / "gce-vm_debian-5.10_boot-dmesg.txt").read_text(encoding="utf-8").splitlines()
    # Hours of a booted host's console: kernel messages and deaths, no new boot.
    source = [line for line in dmesg if "Linux version" not in line]
    source += transcript("kernel-panic-trace.txt")
    watch = ConsoleWatch(tracker=BootTracker("node07"), ring_lines=20_000,
                         ring_chars=2 * 2**20, max_findings=100)
    block = 1000
    cycle = source * (2 + block // len(source))
    tracemalloc.start()
    try:
        fed = 0
        while fed < 1_000_000:
            start = fed % len(source)
            watch.feed_lines(cycle[start:start + block], float(fed))
            fed += block
            if fed == 200_000:
                tracemalloc.reset_peak()
                baseline = tracemalloc.get_traced_memory()[0]
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    lines_held, chars_held = watch.memory()
    assert lines_held <= 20_000 and chars_held <= 2 * 2**20
    assert len(watch.findings) == 100 and sum(watch.counts.values()) > 100
    assert current - baseline < 4 * 2**20  # no growth after the ring filled
    assert peak < 64 * 2**20


# ------------------------------------------------------------------ hostile input


def test_escape_sequences_do_not_hide_a_death_and_evidence_keeps_them() -> None:
    line = "\x1b[1;31m[  5.0] Kernel \x1b[0mpanic - not syncing: Fatal exception\x1b[0m\r"
    [finding] = ConsoleWatch().feed(line, 0.0)
    assert finding.kind == "panic" and finding.evidence == (line,)
    assert "\x1b" not in finding.message


def test_a_megabyte_line_is_matched_up_to_the_limit_only() -> None:
    watch = ConsoleWatch()
    assert watch.feed("x" * 1_000_000 + " Kernel panic - not syncing: late", 0.0) == []
    [finding] = watch.feed("Kernel panic - not syncing: early " + "y" * 1_000_000, 1.0)
    assert len(finding.evidence[0]) < 5000 and len(finding.message) < 500
    assert watch.memory()[1] < 20_000


def test_binary_noise_gives_nothing_and_never_raises() -> None:
    noise = random.Random(7).randbytes(200_000)
    watch = ConsoleWatch(tracker=BootTracker("node07"))
    lines = noise.decode("utf-8", errors="replace").split("\n")
    watch.feed_lines(lines, 0.0)
    for line in noise.decode("latin-1").split("\n"):
        watch.feed(line, 0.0)
    assert watch.death is None


def test_lines_that_imitate_markers_do_not_fake_a_boot() -> None:
    tracker = BootTracker("node07")
    watch = ConsoleWatch(tracker=tracker)
    watch.feed_lines([
        "echo VET-READY ip=10.0.0.1 run=r1 hostkey=SHA256:short",
        "VET-READY ip=10.0.0.1 run=r1 hostkey=SHA256:" + "A" * 43 + " trailing",
        "kernel panic handling is documented in Documentation/admin-guide",
        "grep -r 'Linux version' /var/log",
    ], 0.0)
    assert tracker.ready is None and watch.findings == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=400), max_size=40))
def test_arbitrary_text_never_raises(lines: list[str]) -> None:
    watch = ConsoleWatch(tracker=BootTracker("fuzz"), ring_lines=50)
    mark = watch.mark()
    watch.feed_lines(lines, 0.0)
    for line in lines:
        watch.feed(line, 1.0)
    watch.slice(mark)
    watch.check_deadlines(10**6)
