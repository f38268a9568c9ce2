"""Boot transcripts served over a real TCP socket, read as a console reader reads them.

A server thread writes a transcript at full speed in arbitrary chunks (lines split across
writes, as a serial-over-TCP console delivers them); the test reads with a plain socket with
a deadline, splits lines, and feeds the tracker or the watch. No sleeps: blocking reads with
timeouts and events.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.console.boot import BootPolicy, BootTracker, Finding, Step
from harness.console.watch import ConsoleWatch, Mark

DATA = Path(__file__).resolve().parents[1] / "data" / "boot"
DEADLINE_S = 20.0


def transcript_bytes(*names: str) -> bytes:
    return b"".join((DATA / name).read_bytes() for name in names)


@contextmanager
def console_server(data: bytes, chunk: int) -> Iterator[int]:
    """Serve `data` to one client in `chunk`-byte writes, then close; yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(DEADLINE_S)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for start in range(0, len(data), chunk):
                conn.sendall(data[start:start + chunk])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(DEADLINE_S)
        listener.close()


def read_console(port: int, on_lines: Callable[[list[str], float], Any]) -> int:
    """Read until the server closes, handing over complete lines per read; returns bytes read."""
    deadline = time.monotonic() + DEADLINE_S
    pending = b""
    total = 0
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as sock:
        while True:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            data = sock.recv(65536)
            if not data:
                break
            total += len(data)
            pending += data
            *complete, pending = pending.split(b"\n")
            if complete:
                on_lines([line.decode("utf-8", errors="replace") for line in complete],
                         time.monotonic())
    if pending:
        on_lines([pending.decode("utf-8", errors="replace")], time.monotonic())
    return total


def test_a_healthy_boot_replayed_over_a_socket_is_tracked_to_ready() -> None:
    data = transcript_bytes("qemu-pxe-boot.txt")
    tracker = BootTracker("node07")
    findings: list[Finding] = []
    with console_server(data, chunk=97) as port:
        started = time.monotonic()
        assert read_console(port, lambda lines, at: findings.extend(
            tracker.feed_lines(lines, at))) == len(data)
    assert findings == []
    timeline = tracker.timeline()
    assert [e.step for e in timeline] == [Step.FIRMWARE, Step.IPXE, Step.KERNEL,
                                          Step.INITRAMFS, Step.USERSPACE, Step.READY]
    times = [e.at for e in timeline]
    assert times == sorted(times) and times[0] >= started
    assert tracker.ready is not None
    assert (tracker.ready.ip, tracker.ready.run_id) == ("10.77.0.50", "r20261122-0001")
    assert tracker.ready.hostkey_fingerprint.startswith("SHA256:")


def test_line_by_line_reads_give_the_same_result() -> None:
    data = transcript_bytes("qemu-pxe-boot.txt")
    tracker = BootTracker("node07")
    with console_server(data, chunk=1) as port:
        read_console(port, lambda lines, at: [tracker.feed(line, at) for line in lines])
    assert tracker.step is Step.READY and tracker.findings == []


def test_a_reboot_after_ready_over_a_socket_wakes_the_waiting_stage() -> None:
    data = transcript_bytes("qemu-pxe-boot.txt", "qemu-pxe-boot.txt")
    watch = ConsoleWatch(tracker=BootTracker("node07"))
    with console_server(data, chunk=4096) as port:
        reader = threading.Thread(target=read_console, args=(port, watch.feed_lines))
        reader.start()
        death = watch.wait_for_death(DEADLINE_S)
        reader.join(DEADLINE_S)
    assert death is not None and death.kind == "unexpected-reboot"
    assert "node07: unexpected reboot" in death.message
    assert watch.tracker is not None and watch.tracker.step is Step.READY  # booted again


def test_a_panic_after_ready_over_a_socket_is_a_death_with_the_stage_slice() -> None:
    data = transcript_bytes("qemu-pxe-boot.txt", "kernel-panic-trace.txt")
    watch = ConsoleWatch(tracker=BootTracker("node07"))
    boot_lines = len((DATA / "qemu-pxe-boot.txt").read_bytes().split(b"\n")) - 1
    stage_start: list[Mark] = []

    def feed(lines: list[str], at: float) -> None:
        if not stage_start and watch.mark().seq + len(lines) >= boot_lines:
            # the stage starts once the host is ready: split the read there
            split = boot_lines - watch.mark().seq
            watch.feed_lines(lines[:split], at)
            stage_start.append(watch.mark())
            lines = lines[split:]
        watch.feed_lines(lines, at)

    with console_server(data, chunk=333) as port:
        read_console(port, feed)
    assert watch.death is not None and watch.death.kind == "bug"
    assert "panic" in watch.counts
    stage = watch.slice(stage_start[0])
    assert stage.dropped == 0
    assert stage.lines[0].startswith("[  187.220184] BUG: kernel NULL pointer dereference")
    assert stage.lines[-1].startswith("[  187.232581] ---[ end Kernel panic")


def test_ipxe_failing_over_and_over_is_a_boot_loop() -> None:
    data = transcript_bytes(*["qemu-ipxe-no-dhcp.txt"] * 3)
    tracker = BootTracker("node07", BootPolicy(deadlines={}))
    with console_server(data, chunk=512) as port:
        read_console(port, tracker.feed_lines)
    kinds = [f.kind for f in tracker.findings]
    assert kinds.count("bootloop") == 1 and "ipxe-error" in kinds
    assert [e.step for e in tracker.timeline()] == [Step.FIRMWARE, Step.IPXE] * 3


def test_a_real_lab_boot_is_tracked_through_every_step() -> None:
    """The console of a real virtual-lab guest (SeaBIOS, QEMU's iPXE, Debian's kernel at
    loglevel=4, the live image's initrd and systemd), recovered from its console.log."""
    data = transcript_bytes("lab-vm-good-pxe-boot.txt")
    tracker = BootTracker("vm-good")
    findings: list[Finding] = []
    with console_server(data, chunk=512) as port:
        read_console(port, lambda lines, at: findings.extend(tracker.feed_lines(lines, at)))
    assert findings == []
    assert [e.step for e in tracker.timeline()] == [
        Step.FIRMWARE, Step.IPXE, Step.KERNEL, Step.INITRAMFS, Step.USERSPACE, Step.READY]
    assert tracker.ready is not None
    assert (tracker.ready.ip, tracker.ready.mac) == ("10.77.0.11", "52:54:00:77:00:11")
    assert tracker.ready.token_fingerprint is not None
    assert tracker.ready.token_fingerprint != "none"
