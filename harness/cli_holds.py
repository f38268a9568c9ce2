"""`vet holds`, `vet release`, `vet retry`, `vet janitor`: held hosts and retention.

A failed host stays booted for a human (harness.hold). These commands show how to get
in, re-run a stage on it without booting it again, give it back, and clean up what
old runs left on disk (harness.janitor).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.cli import _store
from harness.errors import VetError
from harness.hold import HoldError, find_hold, forget_hold, release_hold
from harness.janitor import DEFAULT_ARTIFACT_DAYS, DEFAULT_CONSOLE_DAYS, Retention, sweep
from harness.leases import when
from harness.models import Host
from harness.overrides import OVERRIDES
from harness.states import STAGES
from harness.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _one_line(text: str) -> str:
    first = (text or "").strip().splitlines()
    return first[0][:200] if first else ""


def _view(hold: dict[str, Any], now: float) -> dict[str, Any]:
    return {"host": hold["host"], "run_id": hold["run_id"], "stage": hold["stage"],
            "reason": _one_line(hold["reason"]), "since": when(hold["opened_at"]),
            "expires": when(hold["expires_at"]),
            "expired": hold["expires_at"] is not None and hold["expires_at"] <= now,
            "ssh_command": hold["ssh_command"], "key_path": hold["key_path"],
            "ip": hold["ip"], "key_via": hold["key_via"], "held_by": hold["opened_by"],
            "power_off_on_release": bool(hold["power_off"]), "note": hold["note"]}


def cmd_holds(args: argparse.Namespace) -> int:
    now = time.time()
    with _store(args) as store:
        views = [_view(h, now) for h in store.open_holds()]
    if args.json:
        print(json.dumps(views, indent=2))
        return 0
    if not views:
        print("no host is held")
        return 0
    for v in views:
        expiry = "EXPIRED (vet janitor releases it)" if v["expired"] else f"until {v['expires']}"
        print(f"{v['host']}: failed stage {v['stage']} in run {v['run_id']}; held since "
              f"{v['since']} {expiry}")
        print(f"  why:    {v['reason']}")
        print(f"  get in: {v['ssh_command'] or v['note']}")
    return 0


def _inventory_host(store: Store, hold: dict[str, Any], args: argparse.Namespace) -> Host:
    """The held host as the inventory describes it (power driver, PXE server, console)."""
    from harness.inventory import load_inventory

    run = store.run(hold["run_id"]) or {}
    inventory = args.inventory or run.get("inventory")
    if not inventory:
        raise HoldError(f"run {hold['run_id']} names no inventory; pass --inventory")
    try:
        hosts = load_inventory(inventory, None, args.vault_password_file)
    except VetError as exc:
        raise HoldError(f"cannot load inventory {inventory} (of run {hold['run_id']}) to "
                        f"release {hold['host']}: {exc}\npass the right one with --inventory"
                        ) from None
    for host in hosts:
        if host.name == hold["host"]:
            return host
    raise HoldError(f"host {hold['host']} is not in inventory {inventory}; pass the inventory "
                    "that has it with --inventory")


def cmd_release(args: argparse.Namespace) -> int:
    if bool(args.host) == bool(args.all):
        raise VetError("name one host (vet release HOST) or pass --all")
    if args.forget and args.power_off:
        raise VetError("--forget touches nothing, so it cannot --power-off; pass one of them")
    with _store(args) as store:
        holds = store.open_holds() if args.all else [find_hold(store, args.host)]
        if not holds:
            print("no host is held")
            return 0
        failures = 0
        for hold in holds:
            try:
                if args.forget:
                    what = forget_hold(store, hold, reports_dir=Path(args.reports_dir))
                else:
                    host = _inventory_host(store, hold, args)
                    what = release_hold(store, hold, host, power_off=True if args.power_off
                                        else None, reports_dir=Path(args.reports_dir))
                print(f"released {hold['host']}: {what}")
            except VetError as exc:
                if not args.all:
                    raise
                failures += 1
                print(f"vet: error: {exc}", file=sys.stderr)
    return 1 if failures else 0


def cmd_retry(args: argparse.Namespace) -> int:
    with _store(args) as store:
        hold = find_hold(store, args.host)
        run = store.run(hold["run_id"]) or {}
        store_path = store.path.resolve()
    inventory = args.inventory or run.get("inventory")
    if not inventory:
        raise HoldError(f"run {hold['run_id']} names no inventory; pass --inventory")
    run_id = f"retry-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    command = [sys.executable, "-m", "pytest", str(ROOT / "suites"), "-m", f"stage and "
               f"{args.stage}", "--inventory", os.path.abspath(inventory), "--hosts", args.host,
               "--profile", args.profile or run.get("profile") or "quick",
               "--run-id", run_id, "--store", str(store_path),
               "--reports-dir", os.path.abspath(args.reports_dir), "--attach-held",
               "-p", "no:cacheprovider", "-rfE"]
    for name in args.override or ():
        command += ["--override", name]
    if args.vault_password_file:
        command += ["--vault-password-file", os.path.abspath(args.vault_password_file)]
    print(f"retry run {run_id}: stage {args.stage} on held host {args.host} (held from run "
          f"{hold['run_id']}), no reboot" + (f", overrides: {', '.join(args.override)}"
                                            if args.override else ""), flush=True)
    done = subprocess.run(command, cwd=ROOT, check=False)
    print(f"{args.host} stays held: `vet release {args.host}` when you are done", flush=True)
    return done.returncode


def cmd_janitor(args: argparse.Namespace) -> int:
    retention = Retention(console_days=args.console_days, artifact_days=args.artifact_days)
    for name, days in (("--console-days", retention.console_days),
                       ("--artifact-days", retention.artifact_days)):
        if days < 0:
            raise VetError(f"{name} {days:g} is negative; give days to keep, e.g. {name} 30")
    with _store(args) as store:

        def release(hold: dict[str, Any]) -> str:
            host = _inventory_host(store, hold, args)
            return release_hold(store, hold, host, by="vet janitor (expired)",
                                reports_dir=Path(args.reports_dir))

        done = sweep(store, Path(args.reports_dir), retention, dry_run=args.dry_run,
                     release=release)
    print(f"retention: console logs {retention.console_days:g} days, other artifacts "
          f"{retention.artifact_days:g} days" + (" (dry run: nothing changed)"
                                                  if args.dry_run else ""))
    for line in done.lines(args.dry_run):
        print(line)
    return 1 if done.failed else 0


def _inventory_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inventory", default=None,
                        help="inventory with the host (default: the one its run used)")
    parser.add_argument("--vault-password-file", default=None)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    holds = sub.add_parser("holds", help="held hosts: failed stage, why, until when, and the "
                                         "ssh command to get in")
    holds.add_argument("--json", action="store_true", help="machine-readable")
    holds.set_defaults(func=cmd_holds)

    release = sub.add_parser("release", help="release a held host: revoke the hold key, boot "
                                             "script to local disk, power off (per policy)")
    release.add_argument("host", nargs="?", help="the held host")
    release.add_argument("--all", action="store_true", help="release every held host")
    release.add_argument("--power-off", action="store_true",
                         help="power off even where vet_release_power_off is false")
    release.add_argument("--forget", action="store_true",
                         help="the host is gone (lab down, machine pulled): close the hold "
                              "and delete its key without touching the host")
    _inventory_options(release)
    release.set_defaults(func=cmd_release)

    retry = sub.add_parser("retry", help="re-run one stage on a held host (no reboot); it "
                                         "stays held")
    retry.add_argument("host", help="the held host")
    retry.add_argument("--stage", required=True, choices=STAGES)
    retry.add_argument("--override", action="append", choices=sorted(OVERRIDES),
                       help="; ".join(f"{o.name}: {o.help}" for o in OVERRIDES.values())
                       + " (recorded with your name)")
    retry.add_argument("--profile", default=None, help="default: the held run's profile")
    _inventory_options(retry)
    retry.set_defaults(func=cmd_retry)

    janitor = sub.add_parser("janitor", help="release expired holds; delete console logs and "
                                             "artifacts past retention (never store rows)")
    janitor.add_argument("--dry-run", action="store_true", help="say what would be done")
    janitor.add_argument("--console-days", type=float, default=DEFAULT_CONSOLE_DAYS,
                         help=f"keep console logs this long (default {DEFAULT_CONSOLE_DAYS:g})")
    janitor.add_argument("--artifact-days", type=float, default=DEFAULT_ARTIFACT_DAYS,
                         help="keep other run artifacts this long (default "
                              f"{DEFAULT_ARTIFACT_DAYS:g})")
    _inventory_options(janitor)
    janitor.set_defaults(func=cmd_janitor)
