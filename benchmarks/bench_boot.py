"""Power-on to ready for virtual lab guests: one guest alone, then N at once.

Brings up a lab of its own (its own namespace, subnet and ports; the real dnsmasq, HTTP
server and QEMU), then boots guests through the same path a run takes
(harness.netboot: provision, console, power on, VET-READY, SSH, token check) and prints
when each boot step was reached, counted from power-on, plus the controller's share
after the announce (host key pinned, SSH up, /proc/cmdline read and the token verified).
Under TCG booting is CPU-bound: on two cores it saturates at 2-3 guests.

    .venv/bin/python benchmarks/bench_boot.py [--together 3] [--memory 512]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures

from harness.console.boot import Step
from harness.events import EventLog
from harness.image import build_image
from harness.models import Host
from harness.netboot import BootedHost, netboot
from tests.fixtures.lab import guest, lab_for

STEPS = (Step.FIRMWARE, Step.IPXE, Step.KERNEL, Step.INITRAMFS, Step.USERSPACE, Step.READY)


def boot_all(names: list[str], lab_hosts: dict[str, Host], workdir: Path,
             run_id: str) -> dict[str, tuple[BootedHost, float]]:
    """Boot the named guests at the same moment; (booted, seconds to SSH-verified)."""
    results: dict[str, tuple[BootedHost, float]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(names))

    def one(name: str) -> None:
        host = lab_hosts[name]
        events = EventLog(workdir / run_id / name / "events.jsonl", run_id, name)
        try:
            start.wait()
            began = time.time()
            booted = netboot(host, run_id=run_id,
                             console_log=workdir / run_id / name / "console.log",
                             events=events, deadline_s=900)
            results[name] = (booted, time.time() - began)
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


def report(label: str, results: dict[str, tuple[BootedHost, float]]) -> None:
    print(f"\n{label}")
    header = " | ".join(s.label for s in STEPS)
    print(f"| guest | {header} | SSH + token verified | controller share after VET-READY |")
    print("|---" * (len(STEPS) + 3) + "|")
    ready = []
    for name, (booted, total) in sorted(results.items()):
        at = {e.step: e.at - booted.powered_on_at for e in booted.timeline}
        cells = " | ".join(f"{at[s]:.1f}" if s in at else "-" for s in STEPS)
        share = total - at.get(Step.READY, total)
        ready.append(at.get(Step.READY, float("nan")))
        print(f"| {name} | {cells} | {total:.1f} | {share:.2f} |")
    print(f"VET-READY: mean {statistics.mean(ready):.1f} s, max {max(ready):.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--together", type=int, default=3, help="guests booted at once")
    parser.add_argument("--memory", type=int, default=512, help="MiB per guest")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 2
    image = build_image(progress=lambda _m: None)
    names = [f"bench{i}" for i in range(1, args.together + 1)]
    guests = [guest(n, 20 + i, power="qemu", memory_mib=args.memory) for i, n in
              enumerate(names)]
    with lab_for(guests, image) as lab, tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_STATE_HOME"] = lab.env["XDG_STATE_HOME"]
        hosts = {h.name: h for h in lab.hosts}
        print(f"lab up: {lab.lab.spec.netns}, accelerator {lab.lab.status()['accel']}")
        alone = boot_all(names[:1], hosts, Path(tmp), "bench-one")
        for booted, _ in alone.values():
            booted.channel.close()
            if booted.console:
                booted.console.close()
            booted.power.off()
        report("one guest alone (seconds from power-on)", alone)
        together = boot_all(names, hosts, Path(tmp), "bench-many")
        report(f"{len(names)} guests at once (seconds from power-on)", together)
        for booted, _ in together.values():
            booted.channel.close()
            if booted.console:
                booted.console.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
