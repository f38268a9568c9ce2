"""SQLite persistence for runs, host states, results, measurements and events.

Every xdist worker opens its own connection to one WAL database; writes take the
write lock up front (BEGIN IMMEDIATE) so concurrent workers queue instead of
failing, and a transition is committed before anything reports it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.errors import StoreError
from harness.models import Measurement, SpecDifference, to_jsonable
from harness.states import State, check_transition
from harness.write_lock import LockTimeout, WriteLock

#: Each entry moves the schema one version up; never edit a released entry, append.
MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        started_at REAL NOT NULL,
        ended_at REAL,
        status TEXT NOT NULL DEFAULT 'running',
        profile TEXT NOT NULL,
        inventory TEXT NOT NULL,
        params_json TEXT NOT NULL DEFAULT '{}',
        controller TEXT NOT NULL DEFAULT '',
        vet_version TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE hosts (
        run_id TEXT NOT NULL REFERENCES runs(id),
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        stage TEXT,
        reason TEXT NOT NULL DEFAULT '',
        updated_at REAL NOT NULL,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE transitions (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        stage TEXT,
        reason TEXT NOT NULL DEFAULT '',
        at REAL NOT NULL
    );
    CREATE INDEX transitions_host ON transitions (run_id, host, id);
    CREATE TABLE test_results (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,
        stage TEXT NOT NULL,
        nodeid TEXT NOT NULL,
        outcome TEXT NOT NULL,
        started_at REAL NOT NULL,
        duration_s REAL NOT NULL,
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX test_results_host ON test_results (run_id, host, id);
    CREATE TABLE measurements (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,
        stage TEXT NOT NULL,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        unit TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX measurements_host ON measurements (run_id, host);
    CREATE TABLE spec_diffs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,
        item TEXT NOT NULL,
        expected TEXT NOT NULL,
        actual TEXT NOT NULL,
        severity TEXT,
        message TEXT NOT NULL
    );
    CREATE TABLE records (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,
        stage TEXT NOT NULL,
        name TEXT NOT NULL,
        json TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE TABLE holds (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,
        stage TEXT,
        reason TEXT NOT NULL DEFAULT '',
        opened_at REAL NOT NULL,
        expires_at REAL,
        released_at REAL,
        released_by TEXT
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        host TEXT,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        command_id TEXT,
        at REAL NOT NULL,
        payload_json TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_host ON events (run_id, host, id);
    """,
    # 2: holds get what `vet holds` / `vet release` need; host leases refuse a second run
    # on a busy host; operator overrides of a retry are kept with who asked.
    """
    ALTER TABLE holds ADD COLUMN key_path TEXT;
    ALTER TABLE holds ADD COLUMN public_key TEXT;
    ALTER TABLE holds ADD COLUMN ssh_command TEXT;
    ALTER TABLE holds ADD COLUMN ip TEXT;
    ALTER TABLE holds ADD COLUMN ssh_port INTEGER;
    ALTER TABLE holds ADD COLUMN ssh_user TEXT;
    ALTER TABLE holds ADD COLUMN host_key TEXT;
    ALTER TABLE holds ADD COLUMN power_off INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE holds ADD COLUMN opened_by TEXT NOT NULL DEFAULT '';
    ALTER TABLE holds ADD COLUMN key_via TEXT;
    ALTER TABLE holds ADD COLUMN note TEXT NOT NULL DEFAULT '';
    ALTER TABLE holds ADD COLUMN release_note TEXT NOT NULL DEFAULT '';
    CREATE INDEX holds_host ON holds (host, released_at);
    CREATE TABLE host_leases (
        host TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        holder TEXT NOT NULL,
        controller TEXT NOT NULL,
        pid INTEGER NOT NULL,
        pid_start TEXT NOT NULL DEFAULT '',
        acquired_at REAL NOT NULL
    );
    CREATE TABLE overrides (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,
        stage TEXT NOT NULL,
        override TEXT NOT NULL,
        operator TEXT NOT NULL,
        hold_id INTEGER,
        at REAL NOT NULL
    );
    """,
    # 3: the controller process of a run, so `--resume` tells a dead run (its "running"
    # is stale) from a live one; how often and when a run was resumed.
    """
    ALTER TABLE runs ADD COLUMN controller_pid INTEGER;
    ALTER TABLE runs ADD COLUMN controller_pid_start TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN resumed_at REAL;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class Store:
    """One process's handle on the run store; safe to share between its threads."""

    #: How long a write waits for another process's transaction before StoreError.
    WRITE_LOCK_TIMEOUT_S = 60.0

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout = 60000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._write_lock = WriteLock(self.path.with_name(f"{self.path.name}-writelock"))
        except (OSError, sqlite3.OperationalError) as exc:
            raise StoreError(
                f"run store {self.path}: cannot open ({exc}); pass a writable path with --store"
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"run store {self.path}: not a vet run store ({exc}); move it away or pass "
                "another --store"
            ) from exc
        self._lock = threading.RLock()
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._write_lock.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from its first statement."""
        with self._lock:
            try:  # writers queue on the flock, woken at once (see harness.write_lock)
                self._write_lock.acquire(self.WRITE_LOCK_TIMEOUT_S)
            except LockTimeout as exc:
                raise StoreError(
                    f"run store {self.path}: another process held its write lock for "
                    f"{self.WRITE_LOCK_TIMEOUT_S:g} s; find it with `fuser "
                    f"{self._write_lock.path}` (a stopped or hung vet) and end it"
                ) from exc
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                self._write_lock.release()

    def _migrate(self) -> None:
        try:
            with self._write() as db:
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"run store {self.path}: schema version {version} is newer than this vet "
                        f"understands ({SCHEMA_VERSION}); upgrade vet or use another --store"
                    )
                for number in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[number].split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version = {number + 1}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"run store {self.path}: not a vet run store ({exc}); move it away or pass "
                "another --store"
            ) from exc

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # --- runs and hosts -------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        profile: str,
        inventory: str,
        params: dict[str, Any] | None = None,
        controller: str = "",
        vet_version: str = "",
    ) -> None:
        """Create the run row; later callers (other xdist workers) find it there already."""
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs (id, started_at, profile, inventory, params_json,"
                " controller, vet_version) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, time.time(), profile, inventory, json.dumps(params or {}), controller,
                 vet_version),
            )

    def finish_run(self, run_id: str, status: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE runs SET ended_at = ?, status = ? WHERE id = ?",
                (time.time(), status, run_id),
            )

    def set_controller(self, run_id: str, pid: int, pid_start: str) -> None:
        """Record the controller process running the run (see harness.resume)."""
        with self._write() as db:
            db.execute("UPDATE runs SET controller_pid = ?, controller_pid_start = ? "
                       "WHERE id = ?", (pid, pid_start, run_id))

    def resume_run(self, run_id: str, pid: int, pid_start: str) -> None:
        """A new controller takes the run over: running again, counted and timed."""
        with self._write() as db:
            db.execute("UPDATE runs SET status = 'running', ended_at = NULL, resumes = "
                       "resumes + 1, resumed_at = ?, controller_pid = ?, "
                       "controller_pid_start = ? WHERE id = ?",
                       (time.time(), pid, pid_start, run_id))

    def note_host(self, run_id: str, host: str, reason: str,
                  keep_prefix: str | None = None) -> bool:
        """Set a host's reason without moving it (an interrupted host stays where it was).

        With `keep_prefix`, a reason that already starts with it is kept (checked in the
        same statement, so a worker's note is never overwritten by the controller's).
        True if the reason was set.
        """
        query = "UPDATE hosts SET reason = ?, updated_at = ? WHERE run_id = ? AND name = ?"
        params: tuple[object, ...] = (reason, time.time(), run_id, host)
        if keep_prefix is not None:
            query += " AND substr(reason, 1, ?) != ?"
            params += (len(keep_prefix), keep_prefix)
        with self._write() as db:
            return db.execute(query, params).rowcount > 0

    def register_host(self, run_id: str, host: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO hosts (run_id, name, state, updated_at) VALUES (?, ?, ?, ?)",
                (run_id, host, State.REGISTERED.value, time.time()),
            )

    def host_state(self, run_id: str, host: str) -> State | None:
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM hosts WHERE run_id = ? AND name = ?", (run_id, host)
            ).fetchone()
        return State(row["state"]) if row else None

    def transition(
        self, run_id: str, host: str, target: State, reason: str = "", stage: str | None = None
    ) -> State:
        """Move a host to `target`, checked against the table; returns the state it left."""
        with self._write() as db:
            row = db.execute(
                "SELECT state FROM hosts WHERE run_id = ? AND name = ?", (run_id, host)
            ).fetchone()
            current = State(row["state"]) if row else State.REGISTERED
            if row is None:
                db.execute(
                    "INSERT INTO hosts (run_id, name, state, updated_at) VALUES (?, ?, ?, ?)",
                    (run_id, host, current.value, time.time()),
                )
            check_transition(current, target, host)
            now = time.time()
            db.execute(
                "INSERT INTO transitions (run_id, host, from_state, to_state, stage, reason, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, host, current.value, target.value, stage, reason, now),
            )
            db.execute(
                "UPDATE hosts SET state = ?, stage = COALESCE(?, stage), reason = ?,"
                " updated_at = ? WHERE run_id = ? AND name = ?",
                (target.value, stage, reason, now, run_id, host),
            )
        return current

    # --- results ----------------------------------------------------------------------------

    def record_test(
        self,
        run_id: str,
        host: str,
        stage: str,
        nodeid: str,
        outcome: str,
        started_at: float,
        duration_s: float,
        reason: str = "",
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO test_results (run_id, host, stage, nodeid, outcome, started_at,"
                " duration_s, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, host, stage, nodeid, outcome, started_at, duration_s, reason),
            )

    def add_measurements(
        self, run_id: str, host: str, stage: str, measurements: Sequence[Measurement]
    ) -> None:
        now = time.time()
        with self._write() as db:
            db.executemany(
                "INSERT INTO measurements (run_id, host, stage, name, value, unit, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, host, stage, m.name, m.value, m.unit, now) for m in measurements],
            )

    def add_spec_diffs(self, run_id: str, host: str, diffs: Sequence[SpecDifference]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT INTO spec_diffs (run_id, host, item, expected, actual, severity, message)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, host, d.item, d.expected, d.actual,
                     d.severity.value if d.severity else None, d.message)
                    for d in diffs
                ],
            )

    def add_record(self, run_id: str, host: str, stage: str, name: str, record: Any) -> None:
        """Keep a parsed record (e.g. the collected hardware inventory) as JSON."""
        with self._write() as db:
            db.execute(
                "INSERT INTO records (run_id, host, stage, name, json, at) VALUES (?,?,?,?,?,?)",
                (run_id, host, stage, name, json.dumps(to_jsonable(record)), time.time()),
            )

    def add_event(
        self,
        run_id: str,
        host: str | None,
        source: str,
        kind: str,
        payload: dict[str, Any] | None = None,
        command_id: str | None = None,
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO events (run_id, host, source, kind, command_id, at, payload_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, host, source, kind, command_id, time.time(),
                 json.dumps(to_jsonable(payload or {}))),
            )

    # --- queries ----------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Read rows as plain dicts (reports and the CLI build on this)."""
        with self._lock:
            return [dict(row) for row in self._db.execute(sql, params).fetchall()]

    def latest_run_id(self) -> str | None:
        rows = self.query("SELECT id FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1")
        return str(rows[0]["id"]) if rows else None

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return rows[0] if rows else None

    def hosts(self, run_id: str) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM hosts WHERE run_id = ? ORDER BY name", (run_id,))

    def transitions(self, run_id: str, host: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM transitions WHERE run_id = ? AND host = ? ORDER BY id", (run_id, host)
        )

    def test_results(self, run_id: str, host: str | None = None) -> list[dict[str, Any]]:
        if host is None:
            return self.query("SELECT * FROM test_results WHERE run_id = ? ORDER BY id", (run_id,))
        return self.query(
            "SELECT * FROM test_results WHERE run_id = ? AND host = ? ORDER BY id", (run_id, host)
        )

    def measurements(self, run_id: str, host: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM measurements WHERE run_id = ? AND host = ? ORDER BY id", (run_id, host)
        )

    def spec_diffs(self, run_id: str, host: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM spec_diffs WHERE run_id = ? AND host = ? ORDER BY id", (run_id, host)
        )

    def records(self, run_id: str, host: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM records WHERE run_id = ? AND host = ? ORDER BY id", (run_id, host)
        )

    # --- holds, host leases and overrides ---------------------------------------------------

    def add_hold(self, run_id: str, host: str, **fields: Any) -> int:
        """Record an open hold (columns of the holds table as keywords); returns its id."""
        columns = ["run_id", "host", *fields]
        with self._write() as db:
            cursor = db.execute(
                f"INSERT INTO holds ({', '.join(columns)}) VALUES "
                f"({', '.join('?' for _ in columns)})", (run_id, host, *fields.values()))
        return int(cursor.lastrowid or 0)

    def open_holds(self, host: str | None = None) -> list[dict[str, Any]]:
        """Holds not released yet, oldest first (one host's, or all)."""
        if host is None:
            return self.query("SELECT * FROM holds WHERE released_at IS NULL ORDER BY id")
        return self.query("SELECT * FROM holds WHERE released_at IS NULL AND host = ? "
                          "ORDER BY id", (host,))

    def close_hold(self, hold_id: int, released_by: str, note: str = "") -> None:
        with self._write() as db:
            db.execute("UPDATE holds SET released_at = ?, released_by = ?, release_note = ? "
                       "WHERE id = ? AND released_at IS NULL",
                       (time.time(), released_by, note, hold_id))

    def acquire_leases(self, run_id: str, hosts: Sequence[str], lease: dict[str, Any],
                       is_stale: Callable[[dict[str, Any]], bool],
                       attach_held: bool = False) -> list[dict[str, Any]]:
        """Take every host for `run_id` in one transaction, or none: returns the conflicts.

        A conflict is an open hold (unless `attach_held`: a retry works on held hosts) or
        another run's lease that `is_stale` does not clear; stale leases are taken over.
        """
        conflicts: list[dict[str, Any]] = []
        with self._write() as db:
            for host in hosts:
                held = db.execute("SELECT * FROM holds WHERE host = ? AND released_at IS NULL "
                                  "ORDER BY id LIMIT 1", (host,)).fetchone()
                if held is not None and not attach_held:
                    conflicts.append({"host": host, "kind": "held", "run_id": held["run_id"],
                                      "holder": held["opened_by"], "since": held["opened_at"],
                                      "expires_at": held["expires_at"]})
                    continue
                row = db.execute("SELECT * FROM host_leases WHERE host = ?",
                                 (host,)).fetchone()
                if row is not None and row["run_id"] != run_id and not is_stale(dict(row)):
                    conflicts.append({"host": host, "kind": "busy", "run_id": row["run_id"],
                                      "holder": row["holder"], "since": row["acquired_at"],
                                      "pid": row["pid"]})
            if not conflicts:
                now = time.time()
                db.executemany(
                    "INSERT OR REPLACE INTO host_leases (host, run_id, holder, controller, pid,"
                    " pid_start, acquired_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(host, run_id, lease["holder"], lease["controller"], lease["pid"],
                      lease.get("pid_start", ""), now) for host in hosts])
        return conflicts

    def release_leases(self, run_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM host_leases WHERE run_id = ?", (run_id,))

    def leases(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM host_leases ORDER BY host")

    def record_override(self, run_id: str, host: str, stage: str, override: str,
                        operator: str, hold_id: int | None = None) -> None:
        with self._write() as db:
            db.execute("INSERT INTO overrides (run_id, host, stage, override, operator, hold_id,"
                       " at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (run_id, host, stage, override, operator, hold_id, time.time()))

    def overrides(self, host: str | None = None) -> list[dict[str, Any]]:
        if host is None:
            return self.query("SELECT * FROM overrides ORDER BY id")
        return self.query("SELECT * FROM overrides WHERE host = ? ORDER BY id", (host,))
