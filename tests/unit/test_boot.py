"""BootTracker: steps, timeline, announce, and the findings a console can show during a boot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.console.boot import (
    ANNOUNCE_FORMAT,
    DEFAULT_NETBOOT_ERRORS,
    DEFAULT_STEP_PATTERNS,
    BootPolicy,
    BootTracker,
    LineMatcher,
    Step,
    clean_line,
    format_announce,
    parse_announce,
    required_literals,
)
from harness.models import Severity
from tests.unit.corpus_paths import SHARED

DATA = Path(__file__).resolve().parents[1] / "data" / "boot"
FINGERPRINT = "SHA256:weQyZQA6L/DFY4ZhlmbTYCJVaVFvVTG9PkfREtgXXgs"
HEALTHY_STEPS = [Step.FIRMWARE, Step.IPXE, Step.KERNEL, Step.INITRAMFS, Step.USERSPACE,
                 Step.READY]


def transcript(name: str) -> list[str]:
    """A console transcript as a reader hands it over: split at newlines, CRs kept."""
    text = (DATA / name).read_bytes().decode("utf-8")
    return text.split("\n")[:-1]


def shared_kernel_log(name: str) -> list[str]:
    path = SHARED / "kernel-log" / name
    if not path.is_file():
        pytest.skip(f"{path} is not available (no licence to bundle it)")
    return path.read_text(encoding="utf-8").splitlines()


def feed_all(tracker: BootTracker, lines: list[str], start: float = 0.0,
             pace: float = 1.0) -> list[str]:
    """Feed one line every `pace` seconds; return the kinds of the findings."""
    kinds: list[str] = []
    for n, line in enumerate(lines):
        kinds += [f.kind for f in tracker.feed(line, start + n * pace)]
    return kinds


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ healthy boots


def test_healthy_qemu_boot_goes_through_every_step_in_order() -> None:
    tracker = BootTracker("node07")
    assert feed_all(tracker, transcript("qemu-pxe-boot.txt")) == []
    assert [entry.step for entry in tracker.timeline()] == HEALTHY_STEPS
    assert tracker.step is Step.READY
    assert tracker.reboots == 0


def test_timeline_has_the_time_and_clean_line_that_showed_each_step() -> None:
    lines = transcript("qemu-pxe-boot.txt")
    tracker = BootTracker("node07")
    feed_all(tracker, lines, start=100.0)
    first = tracker.timeline()[0]
    assert first.at == 100.0  # the SeaBIOS banner is the first line
    assert first.line == "SeaBIOS (version 1.16.2-debian-1.16.2-1)"  # escapes and CR gone
    kernel = next(e for e in tracker.timeline() if e.step is Step.KERNEL)
    assert kernel.line.startswith("[    0.000000] Linux version 6.1.0-18-amd64")
    assert lines[int(kernel.at - 100.0)].startswith("[    0.000000] Linux version")


def test_the_announce_is_parsed_when_ready() -> None:
    tracker = BootTracker("node07")
    feed_all(tracker, transcript("qemu-pxe-boot.txt"))
    assert tracker.ready is not None
    assert tracker.ready.ip == "10.77.0.50"
    assert tracker.ready.run_id == "r20261122-0001"
    assert tracker.ready.hostkey_fingerprint == FINGERPRINT
    assert tracker.ready.mac == "52:54:00:12:34:56"
    assert tracker.ready.raw.startswith("VET-READY ")


@pytest.mark.parametrize("block", [1, 2, 7, 64, 10_000])
def test_blocks_of_any_size_give_the_same_timeline(block: int) -> None:
    lines = transcript("qemu-pxe-boot.txt") * 2
    tracker = BootTracker("node07", BootPolicy(allowed_reboots=1))
    for n in range(0, len(lines), block):
        assert tracker.feed_lines(lines[n:n + block], float(n)) == []
    assert [e.step for e in tracker.timeline()] == HEALTHY_STEPS * 2


def test_a_real_debian_vm_dmesg_reaches_userspace_without_findings() -> None:
    tracker = BootTracker("gce")
    lines = (DATA / "gce-vm_debian-5.10_boot-dmesg.txt").read_text(encoding="utf-8").splitlines()
    assert feed_all(tracker, lines, pace=0.01) == []
    assert [e.step for e in tracker.timeline()] == [Step.KERNEL, Step.INITRAMFS, Step.USERSPACE]


def test_a_real_supermicro_dmesg_reaches_userspace_without_findings() -> None:
    lines = shared_kernel_log("supermicro-as-4125gs-tnrt_2x-h100l_rocky9_boot-dmesg.txt")
    tracker = BootTracker("gpu01")
    assert feed_all(tracker, lines, pace=0.01) == []
    steps = [e.step for e in tracker.timeline()]
    assert steps[0] is Step.KERNEL and steps[-1] is Step.USERSPACE
    assert tracker.reboots == 0


# ------------------------------------------------------------------ announce


def test_announce_format_round_trips() -> None:
    line = format_announce("10.0.0.9", "AA:BB:CC:DD:EE:01", "run-1", FINGERPRINT,
                           token="0123456789ab")
    assert line == ANNOUNCE_FORMAT.format(ip="10.0.0.9", mac="AA:BB:CC:DD:EE:01",
                                          run_id="run-1", hostkey=FINGERPRINT,
                                          token="0123456789ab")
    announce = parse_announce(line)
    assert announce is not None
    assert (announce.ip, announce.run_id, announce.mac) == ("10.0.0.9", "run-1",
                                                            "aa:bb:cc:dd:ee:01")
    assert announce.token_ok is None
    assert announce.token_fingerprint == "0123456789ab"
    unsigned = parse_announce(format_announce("10.0.0.9", "aa:bb:cc:dd:ee:01", "r", FINGERPRINT))
    assert unsigned is not None and unsigned.token_fingerprint == "none"
    # A token field that is not a fingerprint (e.g. the token itself) makes no announce.
    assert parse_announce(line.replace("0123456789ab", "v1.1700000000.secretpart")) is None


@pytest.mark.parametrize("line", [
    f"VET-READY ip=10.77.0.50 run=r1 token-ok=yes hostkey={FINGERPRINT}",
    f"VET-READY hostkey={FINGERPRINT} run=r1 ip=10.77.0.50 token-ok=yes future=field",
    f"[   42.000001] vet-announce[612]: VET-READY ip=10.77.0.50 run=r1 token-ok=yes "
    f"hostkey={FINGERPRINT}\r",
    f"\x1b[0mVET-READY ip=10.77.0.50 run=r1 token-ok=yes hostkey={FINGERPRINT}  ",
])
def test_announce_fields_in_any_order_and_after_a_prefix(line: str) -> None:
    announce = parse_announce(line)
    assert announce is not None
    assert (announce.ip, announce.run_id, announce.hostkey_fingerprint, announce.token_ok) == (
        "10.77.0.50", "r1", FINGERPRINT, True)
    assert announce.raw == line  # evidence keeps what the console printed


def test_announce_over_ipv6_and_token_not_ok() -> None:
    announce = parse_announce(f"VET-READY ip=fd00::50 run=r1 token-ok=no hostkey={FINGERPRINT}")
    assert announce is not None and announce.ip == "fd00::50" and announce.token_ok is False


@pytest.mark.parametrize("line", [
    "",
    "VET-READY",
    f"VET-READY ip=999.1.1.1 run=r1 hostkey={FINGERPRINT}",  # not an address
    "VET-READY ip=10.0.0.1 run=r1 hostkey=SHA256:tooshort",
    f"VET-READY ip=10.0.0.1 hostkey={FINGERPRINT}",  # no run
    "VET-READY ip=10.0.0.1 run=r1",  # no host key
    f"VET-READY ip=10.0.0.1 run=r1;rm hostkey={FINGERPRINT}",
    f"VET-READY ip=10.0.0.1 run=r1 mac=zz:zz hostkey={FINGERPRINT}",
    f"VET-READY ip=10.0.0.1 run=r1 token-ok=maybe hostkey={FINGERPRINT}",
    f"VET-READY ip=10.0.0.1 run=r1 hostkey={FINGERPRINT} and then some text",
    f"NOT-VET-READYip=10.0.0.1 run=r1 hostkey={FINGERPRINT}",
])
def test_malformed_or_imitated_announces_are_refused(line: str) -> None:
    assert parse_announce(line) is None


def test_a_malformed_announce_does_not_make_the_host_ready() -> None:
    tracker = BootTracker("node07")
    lines = [ln for ln in transcript("qemu-pxe-boot.txt") if "VET-READY" not in ln]
    feed_all(tracker, [*lines, "VET-READY ip=10.77.0.50 run=r1 hostkey=SHA256:nope"])
    assert tracker.step is Step.USERSPACE and tracker.ready is None


# ------------------------------------------------------------------ reboots and loops


def test_a_reboot_after_ready_is_unexpected_and_carries_evidence() -> None:
    lines = transcript("qemu-pxe-boot.txt")
    tracker = BootTracker("node07")
    feed_all(tracker, lines)
    findings = tracker.feed(lines[0], 500.0)
    assert [f.kind for f in findings] == ["unexpected-reboot"]
    finding = findings[0]
    assert finding.severity is Severity.CRITICAL and finding.at == 500.0
    assert finding.message.startswith("node07: unexpected reboot: the host was at VET-READY")
    assert "'vet-live login:'" in finding.message  # the last line before the restart
    assert finding.evidence[-1] == lines[0]  # raw, escapes kept
    assert "\x1b" in finding.evidence[-1]
    assert any("VET-READY" in line for line in finding.evidence)
    assert len(finding.evidence) == 50
    assert tracker.ready is None and tracker.reboots == 1


def test_two_boots_back_to_back_report_one_unexpected_reboot() -> None:
    tracker = BootTracker("node07")
    kinds = feed_all(tracker, transcript("qemu-pxe-boot.txt") * 2)
    assert kinds == ["unexpected-reboot"]
    assert tracker.ready is not None  # the second boot announced again
    assert len(tracker.announces) == 2


def test_allowed_reboots_are_used_up_one_by_one() -> None:
    tracker = BootTracker("node07", BootPolicy(allowed_reboots=1))
    assert feed_all(tracker, transcript("qemu-pxe-boot.txt") * 3) == ["unexpected-reboot"]
    assert tracker.reboots == 2


def test_a_stage_can_announce_an_expected_reboot() -> None:
    tracker = BootTracker("node07")
    lines = transcript("qemu-pxe-boot.txt")
    feed_all(tracker, lines)
    tracker.expect_reboots(1)  # e.g. a firmware update stage
    assert feed_all(tracker, lines) == []


def test_power_cycling_by_the_harness_is_not_an_unexpected_reboot() -> None:
    tracker = BootTracker("node07")
    lines = transcript("qemu-pxe-boot.txt")
    feed_all(tracker, lines)
    tracker.power_on(300.0)
    assert tracker.step is Step.POWER_ON and tracker.ready is None
    assert feed_all(tracker, lines, start=301.0) == []
    assert [e.step for e in tracker.timeline()] == [*HEALTHY_STEPS, Step.POWER_ON,
                                                    *HEALTHY_STEPS]


def test_a_reboot_from_the_kernel_or_initramfs_is_left_to_the_loop_check() -> None:
    lines = transcript("qemu-pxe-boot.txt")
    until_initrd = lines[:next(n for n, ln in enumerate(lines) if "vet-initrd: fetching" in ln)]
    tracker = BootTracker("node07")
    assert feed_all(tracker, until_initrd + lines) == []
    assert tracker.reboots == 1 and tracker.step is Step.READY


def test_three_firmware_starts_without_a_kernel_are_a_boot_loop() -> None:
    tracker = BootTracker("node07")
    kinds = feed_all(tracker, transcript("qemu-ipxe-no-dhcp.txt") * 3)
    assert kinds.count("bootloop") == 1
    loop = next(f for f in tracker.findings if f.kind == "bootloop")
    assert loop.severity is Severity.CRITICAL
    assert loop.message == ("node07: boot loop: firmware started 3 times without reaching "
                            "VET-READY; last console line: "
                            "'SeaBIOS (version 1.16.2-debian-1.16.2-1)'")
    assert any("No more network devices" in line for line in loop.evidence)


def test_the_loop_threshold_is_policy() -> None:
    tracker = BootTracker("node07", BootPolicy(bootloop_after=4))
    assert "bootloop" not in feed_all(tracker, transcript("qemu-ipxe-no-dhcp.txt") * 3)
    assert "bootloop" in feed_all(tracker, transcript("qemu-ipxe-no-dhcp.txt"))


def test_the_same_banner_again_in_firmware_is_a_restart() -> None:
    tracker = BootTracker("node07")
    banner = "SeaBIOS (version 1.16.2-debian-1.16.2-1)"
    assert feed_all(tracker, [banner, "", banner, "", banner]) == ["bootloop"]
    assert [e.step for e in tracker.timeline()] == [Step.FIRMWARE] * 3


def test_different_banners_of_one_post_are_one_pass() -> None:
    post = ["Version 2.22.1282. Copyright (C) 2023 American Megatrends, Inc.",
            "Press <DEL> or <F2> to enter setup.", "Booting from ROM..."]
    tracker = BootTracker("node07")
    assert feed_all(tracker, post * 2) == []
    assert [e.step for e in tracker.timeline()] == [Step.FIRMWARE] * 2


def test_the_loop_count_starts_again_after_ready() -> None:
    tracker = BootTracker("node07", BootPolicy(allowed_reboots=10))
    assert feed_all(tracker, transcript("qemu-pxe-boot.txt") * 5) == []


def test_an_ipxe_chainload_loop_is_a_boot_loop() -> None:
    ipxe = [line for line in transcript("qemu-pxe-boot.txt")
            if line.startswith(("iPXE", "Configuring", "http://10.77.0.1:8080/hosts"))]
    tracker = BootTracker("node07")
    assert feed_all(tracker, ipxe * 3).count("bootloop") == 1


# ------------------------------------------------------------------ panics and netboot errors


def test_a_panic_during_boot_is_reported_once_with_its_trace() -> None:
    lines = transcript("qemu-pxe-boot.txt")
    kernel_part = lines[:next(n for n, ln in enumerate(lines) if "Run /init" in ln)]
    tracker = BootTracker("node07")
    kinds = feed_all(tracker, kernel_part + transcript("kernel-panic-trace.txt"))
    assert kinds == ["panic"]
    panic = tracker.findings[0]
    assert panic.step is Step.KERNEL
    assert panic.message == ("node07: kernel panic during kernel: '[  187.231004] Kernel panic - "
                             "not syncing: Fatal exception'")
    assert any("Oops: 0000" in line for line in panic.evidence)


def test_a_panic_after_a_reboot_is_reported_again() -> None:
    tracker = BootTracker("node07")
    panic = transcript("kernel-panic-trace.txt")
    kinds = feed_all(tracker, ["[    0.000000] Linux version 6.1.0", *panic] * 2)
    assert kinds.count("panic") == 2


def test_ipxe_without_dhcp_gives_its_errors() -> None:
    tracker = BootTracker("node07")
    feed_all(tracker, transcript("qemu-ipxe-no-dhcp.txt"))
    found = [(f.kind, f.severity, f.step) for f in tracker.findings]
    assert found == [
        ("ipxe-error", Severity.WARNING, Step.IPXE),  # No configuration methods succeeded
        ("ipxe-error", Severity.CRITICAL, Step.IPXE),  # No more network devices
        ("pxe-error", Severity.CRITICAL, Step.IPXE),  # No bootable device
    ]
    assert tracker.findings[1].message == (
        "node07: ipxe error during iPXE: 'No more network devices'")


@pytest.mark.parametrize(("line", "kind", "severity"), [
    ("Nothing to boot: No such file or directory (https://ipxe.org/2d03e13b)", "ipxe-error",
     Severity.CRITICAL),
    ("Could not boot image: Exec format error (https://ipxe.org/2e008081)", "ipxe-error",
     Severity.CRITICAL),
    ("http://10.77.0.1:8080/images/vmlinuz... Connection timed out (https://ipxe.org/4c0a6092)",
     "ipxe-error", Severity.WARNING),
    ("Permission denied (http://ipxe.org/0216eb3c)", "ipxe-error", Severity.WARNING),
    ("PXE-E51: No DHCP or proxyDHCP offers were received.", "pxe-error", Severity.WARNING),
    ("PXE-E32: TFTP open timeout", "pxe-error", Severity.WARNING),
])
def test_netboot_errors(line: str, kind: str, severity: Severity) -> None:
    tracker = BootTracker("node07")
    tracker.feed("SeaBIOS (version 1.16.2-debian-1.16.2-1)", 0.0)
    findings = tracker.feed(line, 1.0)
    assert [(f.kind, f.severity) for f in findings] == [(kind, severity)]


def test_netboot_error_words_in_userspace_are_not_netboot_errors() -> None:
    tracker = BootTracker("node07")
    feed_all(tracker, transcript("qemu-pxe-boot.txt"))
    assert tracker.feed("curl: (28) Connection timed out after 5001 milliseconds", 1.0) == []


def test_the_initrd_reporting_a_fatal_error_is_a_finding() -> None:
    tracker = BootTracker("node07")
    tracker.feed("[    0.000000] Linux version 6.1.0-18-amd64", 0.0)
    findings = tracker.feed("vet-initrd: FATAL: no DHCP lease within 120 s (interfaces: eth0)", 9)
    assert [(f.kind, f.step) for f in findings] == [("initrd-error", Step.INITRAMFS)]


# ------------------------------------------------------------------ deadlines


def test_a_step_past_its_deadline_names_what_was_awaited_and_the_last_line() -> None:
    clock = FakeClock()
    tracker = BootTracker("node07", BootPolicy(deadlines={Step.FIRMWARE: 60.0}), clock=clock)
    tracker.feed("SeaBIOS (version 1.16.2-debian-1.16.2-1)")
    tracker.feed("Booting from Hard Disk...\r")
    clock.now += 60.0
    assert tracker.check_deadlines() == []
    clock.now += 0.5
    findings = tracker.check_deadlines()
    assert [(f.kind, f.step, f.at) for f in findings] == [("deadline", Step.FIRMWARE, 1060.5)]
    assert findings[0].message == ("node07: no network boot (PXE/iPXE) 60 s after firmware; "
                                   "last console line: 'Booting from Hard Disk...'")
    assert tracker.check_deadlines() == []  # reported once per step


def test_a_late_line_shows_the_deadline_passed() -> None:
    tracker = BootTracker("node07", BootPolicy(deadlines={Step.IPXE: 30.0}))
    tracker.feed("iPXE initialising devices...ok", 0.0)
    findings = tracker.feed("[    0.000000] Linux version 6.1.0-18-amd64", 45.0)
    assert [f.kind for f in findings] == ["deadline"]
    assert "no kernel started 30 s after iPXE" in findings[0].message
    assert tracker.step is Step.KERNEL


def test_moving_on_in_time_starts_the_next_deadline() -> None:
    tracker = BootTracker("node07", BootPolicy(deadlines={Step.FIRMWARE: 60.0, Step.IPXE: 60.0}))
    tracker.feed("SeaBIOS (version 1.16.2-debian-1.16.2-1)", 0.0)
    tracker.feed("iPXE initialising devices...ok", 50.0)
    assert tracker.check_deadlines(100.0) == []
    assert [f.step for f in tracker.check_deadlines(111.0)] == [Step.IPXE]


def test_power_on_without_console_output_has_a_deadline() -> None:
    tracker = BootTracker("node07", BootPolicy(deadlines={Step.POWER_ON: 120.0}))
    tracker.power_on(0.0)
    assert tracker.check_deadlines(100.0) == []
    findings = tracker.check_deadlines(121.0)
    assert findings[0].message == ("node07: no console output recognised 120 s after power-on; "
                                   "last console line: ''")


def test_ready_has_no_deadline() -> None:
    tracker = BootTracker("node07")
    feed_all(tracker, transcript("qemu-pxe-boot.txt"))
    assert tracker.check_deadlines(10**9) == []


# ------------------------------------------------------------------ hostile input


def test_a_banner_after_binary_noise_on_the_same_line_is_seen() -> None:
    tracker = BootTracker("node07")
    tracker.feed("\x00\xff\ufffd\x07\x1b[2J\x1b[1;1HSeaBIOS (version 1.16.2)\r", 0.0)
    assert tracker.step is Step.FIRMWARE


def test_a_progress_line_redrawn_with_carriage_returns_matches_each_segment() -> None:
    tracker = BootTracker("node07")
    tracker.feed("garbage\rConfiguring (net0 52:54:00:12:34:56)... ok", 0.0)
    assert tracker.step is Step.IPXE


def test_a_megabyte_line_is_cut_for_matching_and_evidence() -> None:
    tracker = BootTracker("node07")
    tracker.feed("x" * 1_000_000 + "Linux version 6.1", 0.0)  # past the match limit
    assert tracker.step is None
    tracker.feed("Linux version 6.1" + "y" * 1_000_000, 1.0)
    assert tracker.step is Step.KERNEL
    assert all(len(line) < 5000 for line in tracker.tail())


def test_the_kernel_naming_the_firmware_vendor_is_not_a_firmware_restart() -> None:
    tracker = BootTracker("node07")
    tracker.feed("[    0.000000] Linux version 5.14.0-570.23.1.el9_6.x86_64", 0.0)
    tracker.feed("[    0.000000] efi: EFI v2.8 by American Megatrends", 0.1)
    tracker.feed("[    0.000000] DMI: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2", 0.2)
    assert tracker.step is Step.KERNEL and tracker.reboots == 0


def test_a_line_that_only_mentions_a_banner_mid_text_does_not_move_backwards() -> None:
    tracker = BootTracker("node07")
    feed_all(tracker, transcript("qemu-pxe-boot.txt"))
    tracker.feed("Booting from ROM... (an operator's note)", 1.0)
    tracker.feed("[ 99.0] systemd[1]: Reached target Shutdown.", 2.0)
    assert tracker.step is Step.READY and tracker.reboots == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=300), max_size=30))
def test_arbitrary_text_never_raises(lines: list[str]) -> None:
    tracker = BootTracker("fuzz")
    tracker.feed_lines(lines, 0.0)
    for n, line in enumerate(lines):
        tracker.feed(line, float(n))
        parse_announce(line)
        clean_line(line)
    tracker.check_deadlines(10**6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(
    [*transcript("qemu-pxe-boot.txt"), *transcript("qemu-ipxe-no-dhcp.txt"),
     *transcript("kernel-panic-trace.txt")]), max_size=60))
def test_shuffled_transcript_lines_never_raise(lines: list[str]) -> None:
    tracker = BootTracker("fuzz")
    tracker.feed_lines(lines, 0.0)
    assert len(tracker.tail()) <= 50


# ------------------------------------------------------------------ the matcher


@pytest.mark.parametrize(("regex", "literals"), [
    (r"Kernel panic - not syncing", ("Kernel panic - not syncing",)),
    (r"SeaBIOS \(version ", ("SeaBIOS (version ",)),
    (r"^iPXE \d\S* -- Open Source", (" -- Open Source",)),
    (r"[Hh]ard LOCKUP|rcu_\w+ (?:self-)?detected stalls?", ("ard LOCKUP", "detected stall")),
    (r"EDAC .*\bUE\b", ("EDAC ",)),
    (r"abcd+e", ("abc",)),
    (r"ab{2}cde", ("cde",)),
    (r"(?i)kernel panic", None),  # case-insensitive: a literal would lie
    (r"\x41BCDEF", None),
    (r"\d+ a", None),  # nothing long enough
])
def test_required_literals(regex: str, literals: tuple[str, ...] | None) -> None:
    assert required_literals(regex) == literals


def _all_default_regexes() -> list[str]:
    regexes = [e.regex for e in DEFAULT_NETBOOT_ERRORS]
    for patterns in DEFAULT_STEP_PATTERNS.values():
        regexes += [*patterns.starts, *patterns.shows]
    return regexes


@pytest.mark.parametrize("regex", _all_default_regexes())
def test_every_default_pattern_has_a_literal_so_it_is_prefiltered(regex: str) -> None:
    assert required_literals(regex) is not None


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_every_text_a_default_pattern_matches_contains_its_literal(data: st.DataObject) -> None:
    regex = data.draw(st.sampled_from(_all_default_regexes()))
    text = data.draw(st.from_regex(re.compile(regex), fullmatch=True))
    literals = required_literals(regex)
    assert literals is not None and any(lit in text for lit in literals)


def test_matcher_finds_each_line_and_every_regex_it_matches() -> None:
    matcher = LineMatcher([r"panic", r"BUG: \w+", r"\d{3}-\d{4}"])  # the last has no literal
    lines = ["ok", "BUG: oops and panic", "call 555-1234", "", "panic"]
    assert matcher.scan(lines) == [(1, [0, 1]), (2, [2]), (4, [0])]
    assert matcher.scan([]) == []
    assert matcher.scan(["nothing here"]) == []


def test_attached_to_a_running_host_a_reboot_is_unexpected() -> None:
    tracker = BootTracker("node07", clock=lambda: 100.0)
    tracker.attached_running()
    assert tracker.step is Step.USERSPACE
    findings = tracker.feed("[    0.000000] Linux version 6.1.0-18-amd64 (gcc-12)")
    assert [f.kind for f in findings] == ["unexpected-reboot"]


def test_vet_ipxe_handover_marks_the_kernel_step() -> None:
    """With loglevel=4 the kernel prints nothing of its own before the initrd speaks; the
    iPXE script's last line is what shows the kernel started."""
    tracker = BootTracker("node01")
    tracker.power_on(at=0.0)
    tracker.feed("iPXE initialising devices...ok", at=1.0)
    tracker.feed("http://10.77.0.1:8080/initrd.img... ok", at=20.0)
    assert tracker.step is Step.IPXE
    tracker.feed("vet-ipxe: starting the kernel", at=21.0)
    assert tracker.timeline()[-1].step is Step.KERNEL
    tracker.feed("vet-initrd: [5.92] started (kernel 6.1.0-50-amd64)", at=27.0)
    assert [(e.step, e.at) for e in tracker.timeline()][-2:] == [(Step.KERNEL, 21.0),
                                                               (Step.INITRAMFS, 27.0)]
