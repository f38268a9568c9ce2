"""Retention: release expired holds, delete old console logs and artifacts.

What a run leaves under reports/runs/<run>/ grows with every run (console logs most);
the store's rows (runs, transitions, results, measurements, spec diffs, holds) are small
and are the history, so the janitor never deletes a row. Age is a file's modification
time. Files of a run that is still live (a controller holds its leases) and of hosts
that are still held are kept whatever their age: someone is using them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.leases import is_stale, when
from harness.store import Store

#: Console logs are the bulk (a TCG boot and a stress run write megabytes).
DEFAULT_CONSOLE_DAYS = 14.0
#: Everything else under a run's folder: evidence, events, Allure results, summaries.
DEFAULT_ARTIFACT_DAYS = 90.0
DAY_S = 86400.0


@dataclass(frozen=True)
class Retention:
    console_days: float = DEFAULT_CONSOLE_DAYS
    artifact_days: float = DEFAULT_ARTIFACT_DAYS


@dataclass
class Sweep:
    """What one janitor pass did (or, dry, would do)."""

    released: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    deleted: list[Path] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    freed_bytes: int = 0

    def lines(self, dry_run: bool) -> list[str]:
        verb = "would delete" if dry_run else "deleted"
        out = [*self.released, *self.failed, *self.kept]
        consoles = [p for p in self.deleted if p.name == "console.log"]
        out.append(f"{verb} {len(consoles)} console log(s) and "
                   f"{len(self.deleted) - len(consoles)} other artifact(s), "
                   f"{self.freed_bytes / 1e6:.1f} MB; no store rows are ever deleted")
        out += [f"  {verb} {p}" for p in self.deleted]
        return out


def _is_console(path: Path) -> bool:
    return path.name == "console.log"


def _live_runs(store: Store) -> set[str]:
    return {lease["run_id"] for lease in store.leases() if not is_stale(lease)}


def sweep(store: Store, reports_dir: Path, retention: Retention, *, dry_run: bool,
          release: Callable[[dict[str, Any]], str], now: float | None = None) -> Sweep:
    """Release expired holds (through `release`), then delete files past retention."""
    now = time.time() if now is None else now
    done = Sweep()
    for hold in store.open_holds():
        if hold["expires_at"] is None or hold["expires_at"] > now:
            continue
        head = (f"{'would release' if dry_run else 'released'} {hold['host']} (held since "
                f"{when(hold['opened_at'])}, expired {when(hold['expires_at'])})")
        if dry_run:
            done.released.append(head)
            continue
        try:
            done.released.append(f"{head}: {release(hold)}")
        except Exception as exc:  # one stuck host must not keep the others held
            done.failed.append(f"could not release {hold['host']}: {exc}")
    live = _live_runs(store)
    held = {(h["run_id"], h["host"]) for h in store.open_holds()}
    runs = reports_dir / "runs"
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        if not run_dir.is_dir():
            continue
        if run_dir.name in live:
            done.kept.append(f"kept runs/{run_dir.name}: the run is still going")
            continue
        for path in sorted(run_dir.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            rel = path.relative_to(run_dir)
            if len(rel.parts) > 1 and (run_dir.name, rel.parts[0]) in held:
                continue
            days = retention.console_days if _is_console(path) else retention.artifact_days
            info = path.stat()
            if now - info.st_mtime <= days * DAY_S:
                continue
            done.deleted.append(path)
            done.freed_bytes += info.st_size
            if not dry_run:
                path.unlink(missing_ok=True)
        held_here = sorted(h for r, h in held if r == run_dir.name)
        if held_here:
            done.kept.append(f"kept the files of held host(s) {', '.join(held_here)} in "
                             f"runs/{run_dir.name}")
        if not dry_run:
            _remove_empty(run_dir)
    return done


def _remove_empty(folder: Path) -> None:
    """Remove folders left empty, deepest first (the run folder too)."""
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()
