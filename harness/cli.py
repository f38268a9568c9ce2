"""`vet`: the operator's command line around the pytest suites.

Vetting itself runs through pytest (`pytest suites -m stage ...`); this command does
everything around it: reports, inventory checks and drafts, run listings.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import VetError
from harness.report import iso, write_summary
from harness.store import Store
from harness.summary import render_summary


def _store(args: argparse.Namespace) -> Store:
    path = Path(args.store) if args.store else Path(args.reports_dir) / "vet.sqlite"
    if not path.exists():
        raise VetError(
            f"no run store at {path}; run a vetting first (make demo, or pytest suites -m stage)"
            " or pass --store"
        )
    return Store(path)


def _run_id(store: Store, wanted: str | None) -> str:
    run_id = wanted or store.latest_run_id()
    if run_id is None:
        raise VetError(f"the run store {store.path} has no runs yet; run a vetting first")
    if store.run(run_id) is None:
        raise VetError(f"run {run_id!r} is not in {store.path}; `vet runs` lists the runs")
    return run_id


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report_html import build_html_report

    reports = Path(args.reports_dir)
    with _store(args) as store:
        run_id = _run_id(store, args.run)
        run_dir = reports / "runs" / run_id
        summary = write_summary(store, run_id, run_dir / "summary.json")
        table = render_summary(store, run_id)
    print(f"run {run_id}")
    print(table)
    print(f"\nJSON summary: {summary}")
    if args.no_html:
        return 0
    results = run_dir / "allure-results"
    if not results.is_dir():
        raise VetError(f"no Allure results for run {run_id} at {results}; the run wrote none "
                       "(was it started with another --reports-dir?)")
    html = build_html_report(results, reports / "html", reports / "allure-history.jsonl",
                             name=f"vet run {run_id}")
    print(f"HTML report:  {html.resolve()}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    with _store(args) as store:
        runs = store.query("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (args.limit,))
        for run in runs:
            hosts = store.hosts(run["id"])
            done = sum(h["state"] == "Completed" for h in hosts)
            print(f"{run['id']}  {iso(run['started_at'])}  {run['status']:<11} "
                  f"{run['profile']:<8} {done}/{len(hosts)} hosts passed  {run['inventory']}")
    return 0


def cmd_inventory_check(args: argparse.Namespace) -> int:
    from harness.inventory import load_inventory
    from harness.profiles import override_problems

    hosts = load_inventory(args.inventory, args.hosts, args.vault_password_file)
    problems = [p for h in hosts for p in override_problems(h)]
    if problems:
        raise VetError("\n".join(f"{args.inventory}: {p}" for p in problems))
    for h in hosts:
        macs = ",".join(h.macs) or "-"
        print(f"{h.name:<20} {h.connection.kind:<6} power={h.power.driver:<8} macs={macs} "
              f"console={h.console or '-'} disks={len(h.spec.disks)}")
    print(f"{len(hosts)} host(s) OK in {args.inventory}")
    return 0


def cmd_inventory_draft(args: argparse.Namespace) -> int:
    from harness.draft import draft_local

    sys.stdout.write(draft_local())
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    """Parse and judge one captured tool output: exit 0/1/2/3 (docs/JUDGE.md)."""
    from harness.judge.tools import main_judge

    return main_judge(args.tool, args.file)


#: Modules that add their own subcommands: each has ``register(sub)`` taking the
#: subparsers action, so a command family lives beside its code, not in this file.
COMMAND_MODULES: tuple[str, ...] = (
    "harness.cli_console", "harness.cli_holds", "harness.cli_live",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vet", description=__doc__)
    parser.add_argument("--reports-dir", default="reports", help="default ./reports")
    parser.add_argument("--store", default=None, help="run store (default REPORTS/vet.sqlite)")
    sub = parser.add_subparsers(dest="command", required=True)

    report = sub.add_parser("report", help="JSON summary and single-file HTML report of a run")
    report.add_argument("--run", help="run id (default: the latest run)")
    report.add_argument("--no-html", action="store_true", help="only the JSON summary")
    report.set_defaults(func=cmd_report)

    runs = sub.add_parser("runs", help="list recent runs")
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(func=cmd_runs)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)

    inventory = sub.add_parser("inventory", help="check an inventory or draft a host's spec")
    inv_sub = inventory.add_subparsers(dest="inventory_command", required=True)
    check = inv_sub.add_parser("check", help="load and validate an inventory, list its hosts")
    check.add_argument("inventory", nargs="?", default="inventory/local")
    check.add_argument("--hosts", default=None, help="host pattern, as ansible --limit")
    check.add_argument("--vault-password-file", default=None)
    check.set_defaults(func=cmd_inventory_check)
    draft = inv_sub.add_parser(
        "draft", help="print host_vars YAML describing this machine (a first vet_spec)")
    draft.set_defaults(func=cmd_inventory_draft)

    judge = sub.add_parser(
        "judge", help="judge a tool's output captured anywhere: JSON record, verdict, reasons; "
                      "exit 0 healthy, 1 warning, 2 failing, 3 cannot judge (docs/JUDGE.md)")
    judge.add_argument("tool", nargs="?", help="smartctl, nvidia-smi, ipmitool, dmesg, ...")
    judge.add_argument("file", nargs="?", help="the captured output, or - for stdin")
    judge.set_defaults(func=cmd_judge)

    image = sub.add_parser("image", help="the live image hosts PXE-boot into")
    image_sub = image.add_subparsers(dest="image_command", required=True)
    image_build = image_sub.add_parser(
        "build", help="build the live image (cached per recipe; needs root to build)")
    image_build.add_argument("--force", action="store_true", help="rebuild even if cached")
    image_build.add_argument("--output", default=None, help="also place the artifacts here")
    image_build.set_defaults(func=cmd_image_build)

    pxe = sub.add_parser("pxe", help="the PXE server hosts boot from")
    pxe_sub = pxe.add_subparsers(dest="pxe_command", required=True)
    pxe_setup = pxe_sub.add_parser(
        "setup", help="render dnsmasq (MAC allowlist), TFTP and HTTP roots for an inventory "
                      "(pxe_server.yml); in service mode also install and start the units")
    pxe_setup.add_argument("--inventory", required=True)
    pxe_setup.add_argument("--hosts", default=None, help="host pattern, as ansible --limit")
    pxe_setup.add_argument("--vault-password-file", default=None)
    pxe_setup.add_argument("--image-dir", default=None,
                           help="live image directory (default: vet image build, cached)")
    pxe_setup.set_defaults(func=cmd_pxe_setup)

    lab = sub.add_parser("lab", help="the virtual lab: QEMU guests PXE-booting the live image")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    for name, func, text in (
            ("up", cmd_lab_up, "build or reuse the image; start namespace, dnsmasq, HTTP, "
                               "guests (powered off) and their BMCs"),
            ("down", cmd_lab_down, "stop everything the lab started and remove it"),
            ("status", cmd_lab_status, "what runs, each guest's power state")):
        command = lab_sub.add_parser(name, help=text)
        command.add_argument("--inventory", default=LAB_INVENTORY,
                             help=f"the lab inventory (default {LAB_INVENTORY})")
        command.add_argument("--vault-password-file", default=None)
        if name == "status":
            command.add_argument("--json", action="store_true", help="machine-readable")
        command.set_defaults(func=func)
    return parser


def cmd_image_build(args: argparse.Namespace) -> int:
    from harness.image import build_image

    art = build_image(Path(args.output) if args.output else None, force=args.force)
    print(f"live image {art.recipe_hash} ({'cached' if art.cached else 'built'}):")
    for label, path in (("kernel", art.vmlinuz), ("initrd", art.initrd),
                        ("root", art.squashfs), ("manifest", art.manifest)):
        print(f"  {label:<9} {path}")
    return 0


LAB_INVENTORY = "inventory/virtual"


def cmd_pxe_setup(args: argparse.Namespace) -> int:
    """Render the PXE server for an inventory's hosts (pxe_server.yml via ansible-runner)."""
    from harness.image import build_image
    from harness.inventory import load_inventory
    from harness.provision import setup_pxe_server

    hosts = [h for h in load_inventory(args.inventory, args.hosts, args.vault_password_file)
             if h.pxe is not None]
    if not hosts:
        raise VetError(f"{args.inventory}: no host has vet_pxe; see docs/PXE.md")
    servers = {h.pxe for h in hosts}
    if len(servers) > 1:
        raise VetError(f"{args.inventory}: the hosts name {len(servers)} different vet_pxe "
                       "settings; set up one PXE server at a time with --hosts")
    pxe = hosts[0].pxe
    assert pxe is not None
    image_dir = Path(args.image_dir) if args.image_dir else build_image(
        progress=lambda msg: print(msg, file=sys.stderr, flush=True)).directory

    def show(event: dict[str, Any]) -> None:
        if event.get("task") and event.get("event") in ("runner_on_ok", "runner_on_failed"):
            mark = "changed" if event.get("changed") else event.get("status", "ok")
            print(f"  {event['task']}: {mark}", flush=True)

    setup_pxe_server(pxe, hosts, image_dir, on_event=show)
    booting = [h.name for h in hosts if h.macs]
    print(f"PXE server ({pxe.mode}) for {len(booting)} host(s) on {pxe.interface}: "
          f"TFTP {pxe.root}/tftp, HTTP http://{pxe.server}:{pxe.http_port}/")
    return 0


def _lab(args: argparse.Namespace) -> Any:
    from harness.inventory import load_inventory
    from harness.lab.lab import Lab
    from harness.lab.spec import lab_spec

    hosts = load_inventory(args.inventory, None, args.vault_password_file)
    return Lab(lab_spec(hosts, args.inventory), hosts)


def cmd_lab_up(args: argparse.Namespace) -> int:
    from harness.image import build_image

    lab = _lab(args)
    image = build_image(progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    lab.up(image.directory)
    _print_lab_status(lab.status())
    print(f"\nthe guests are powered off; vet powers them on when a run needs them:\n"
          f"  pytest suites -m stage --inventory {args.inventory} -n {len(lab.spec.guests)}\n"
          f"take the lab down with: vet lab down --inventory {args.inventory}")
    return 0


def cmd_lab_down(args: argparse.Namespace) -> int:
    lab = _lab(args)
    left = lab.down()
    if left:
        raise VetError("the lab is not completely gone:\n  " + "\n  ".join(left))
    print(f"lab {lab.spec.netns} is down (logs kept in {lab.logs})")
    _forget_lab_holds(args, [guest.name for guest in lab.spec.guests])
    return 0


def _forget_lab_holds(args: argparse.Namespace, guests: list[str]) -> None:
    """The guests are gone with the lab: their holds close, or the next run is refused."""
    from harness.hold import forget_hold

    path = Path(args.store) if args.store else Path(args.reports_dir) / "vet.sqlite"
    if not path.exists():
        return
    with Store(path) as store:
        for hold in store.open_holds():
            if hold["host"] in guests:
                forget_hold(store, hold, reports_dir=Path(args.reports_dir))
                print(f"closed the hold on {hold['host']} (run {hold['run_id']}): the guest "
                      "is gone with the lab")


def cmd_lab_status(args: argparse.Namespace) -> int:
    import json

    status = _lab(args).status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print_lab_status(status)
    return 0 if status["up"] else 1


def _print_lab_status(status: dict[str, Any]) -> None:
    if not status["up"]:
        print(f"lab {status['netns']} is down")
        return
    print(f"lab {status['netns']} is up since {status.get('started', '?')}: network "
          f"{status['network']}, controller {status['controller']}; {status['accel']}")
    for proc in status["processes"]:
        print(f"  {proc['what']:<22} pid {proc['pid']:<8} "
              f"{'running' if proc['running'] else 'NOT RUNNING'}")
    for guest in status["guests"]:
        print(f"  guest {guest['name']:<14} {guest['mac']}  {guest['ip'] or '-':<12} "
              f"power {guest['power']:<18} via {guest['power_driver']:<8} {guest['console']}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except VetError as exc:
        print(f"vet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`vet lab status | head`): not an error worth a traceback.
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())
