"""Power-on to ready for virtual lab guests: one guest alone, then N at once.

Brings up a lab of its own (its own namespace, subnet and ports; the real dnsmasq, HTTP
server and QEMU), then boots guests through the same path a run takes
(harness.netboot: provision, console, power on, VET-READY, SSH, token check) and prints
when each boot step was reached, counted from power-on, plus the controller's share
after the announce: SSH up (TCP, key exchange, login, the persistent shell) and the run
token verified from /proc/cmdline, which is where netboot returns and the first stage
can start. Under TCG booting is CPU-bound: on two cores it saturates at 2-3 guests.

Wall times move with the machine's load. "guest CPU s" is the CPU time the guest's
QEMU process used from power-on to VET-READY (and from VET-READY to the token check):
an emulated CPU does about the same work per boot, so this figure moves less than wall
time with other work on the machine (it still moved 25 % between two loaded runs of one
image): compare images booted one after the other, alternating.
`--analyze` also prints `systemd-analyze` (blame, critical chain) from the first guest.
`--image DIR` boots the artifacts in DIR instead of the recipe's (to compare two images
side by side, alternating: `--image A --image B --rounds 2`).

    .venv/bin/python benchmarks/bench_boot.py [--together 3] [--memory 512] [--analyze]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

from harness.console.boot import Step
from harness.console.serial import SerialChannel
from harness.console.watch import ConsoleWatch
from harness.events import EventLog
from harness.image import ImageArtifacts, build_image
from harness.models import Host
from harness.netboot import BootedHost, netboot
from tests.fixtures.lab import RunningLab, guest, lab_for

STEPS = (Step.FIRMWARE, Step.IPXE, Step.KERNEL, Step.INITRAMFS, Step.USERSPACE, Step.READY)
ANALYZE = ("systemd-analyze; systemd-analyze blame | head -25; "
           "systemd-analyze critical-chain vet-announce.service")


@dataclass
class Booted:
    """One guest's boot: what netboot returned, and the guest's CPU seconds at READY
    and at the token check (from power-on)."""

    host: BootedHost
    cpu_ready: float
    cpu_verified: float


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def boot_all(names: list[str], lab: RunningLab, workdir: Path,
             run_id: str) -> dict[str, Booted]:
    """Boot the named guests at the same moment."""
    lab_hosts: dict[str, Host] = {h.name: h for h in lab.hosts}
    results: dict[str, Booted] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(names))

    def one(name: str) -> None:
        host = lab_hosts[name]
        events = EventLog(workdir / run_id / name / "events.jsonl", run_id, name)
        pid = int((lab.lab.spec.guest_dir(name) / "qemu.pid").read_text())
        at_ready: list[float] = []

        def watch_ready(console: SerialChannel, _watch: ConsoleWatch) -> None:
            def lines(batch: list[str], _at: float, _offset: int | None) -> None:
                if not at_ready and any("VET-READY " in line for line in batch):
                    at_ready.append(_cpu_seconds(pid))
            console.subscribe_lines(lines)

        try:
            start.wait()
            cpu0 = _cpu_seconds(pid)
            booted = netboot(host, run_id=run_id,
                             console_log=workdir / run_id / name / "console.log",
                             events=events, deadline_s=900, on_console_open=watch_ready)
            cpu1 = _cpu_seconds(pid)
            results[name] = Booted(booted, (at_ready[0] if at_ready else cpu1) - cpu0,
                                   cpu1 - cpu0)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            events.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def report(label: str, results: dict[str, Booted]) -> None:
    print(f"\n{label}")
    header = " | ".join(s.label for s in STEPS)
    print(f"| guest | {header} | SSH up | token verified | after VET-READY: SSH up / "
          "verified | guest CPU s to READY / after |")
    print("|---" * (len(STEPS) + 6) + "|")
    ready, shares = [], []
    for name, one in sorted(results.items()):
        booted = one.host
        at = {e.step: e.at - booted.powered_on_at for e in booted.timeline}
        cells = " | ".join(f"{at[s]:.1f}" if s in at else "-" for s in STEPS)
        up = booted.connected_at - booted.powered_on_at
        verified = booted.verified_at - booted.powered_on_at
        ready_s = at.get(Step.READY, verified)
        ready.append(ready_s)
        shares.append(verified - ready_s)
        print(f"| {name} | {cells} | {up:.1f} | {verified:.1f} | {up - ready_s:.2f} / "
              f"{verified - ready_s:.2f} | {one.cpu_ready:.1f} / "
              f"{one.cpu_verified - one.cpu_ready:.2f} |")
    print(f"VET-READY: mean {statistics.mean(ready):.1f} s, max {max(ready):.1f} s; "
          f"VET-READY to token verified: mean {statistics.mean(shares):.2f} s")


def close(results: dict[str, Booted], power_off: bool) -> None:
    for one in results.values():
        one.host.channel.close()
        if one.host.console:
            one.host.console.close()
        if power_off:
            one.host.power.off()


def analyze(results: dict[str, Booted]) -> None:
    name, one = sorted(results.items())[0]
    result = one.host.channel.run(ANALYZE, 120)
    print(f"\nsystemd-analyze on {name}:\n{result.stdout}{result.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--together", type=int, default=3, help="guests booted at once "
                        "(0: only the guest alone)")
    parser.add_argument("--memory", type=int, default=512, help="MiB per guest")
    parser.add_argument("--analyze", action="store_true",
                        help="print systemd-analyze from the guest booted alone")
    parser.add_argument("--image", action="append", type=Path, default=[],
                        help="a directory with vmlinuz, initrd.img, root.squashfs "
                        "(repeatable; default: the recipe's image, built if needed)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="boots alone per image, the images alternating")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 2
    images = [ImageArtifacts.in_dir(d.resolve(), d.name, cached=True) for d in args.image]
    if not images:
        images = [build_image(progress=lambda _m: None)]
    count = max(args.together, 1)
    names = [f"bench{i}" for i in range(1, count + 1)]
    guests = [guest(n, 20 + i, power="qemu", memory_mib=args.memory) for i, n in
              enumerate(names)]
    for round_ in range(1, args.rounds + 1):
        for image in images:
            with lab_for(guests, image) as lab, tempfile.TemporaryDirectory() as tmp:
                os.environ["XDG_STATE_HOME"] = lab.env["XDG_STATE_HOME"]
                print(f"\nimage {image.directory} (round {round_}), lab "
                      f"{lab.lab.spec.netns}, accelerator {lab.lab.status()['accel']}, "
                      f"load average {os.getloadavg()[0]:.1f}")
                alone = boot_all(names[:1], lab, Path(tmp), "bench-one")
                report("one guest alone (seconds from power-on)", alone)
                if args.analyze:
                    analyze(alone)
                close(alone, power_off=True)
                if args.together > 1:
                    together = boot_all(names, lab, Path(tmp), "bench-many")
                    report(f"{len(names)} guests at once (seconds from power-on)", together)
                    close(together, power_off=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
