"""Notifications: tell people when a host fails, is held, or a run ends (through apprise).

apprise turns one URL per target into ntfy, Discord, e-mail and ~100 other services,
and bounds a call with notify(timeout=). vet adds what a vetting run needs on top:
routing (which event kinds and severities go to which URL, from `vet_notify`), one
background thread per delivery so a stage or the run never waits on a slow receiver,
a hard bound per delivery, and counts of what was sent and what failed for the run
summary (docs/NOTIFY.md).

Target URLs may hold secrets (webhook tokens, SMTP passwords). A URL lives only in
`NotifyRoute.url` (kept out of repr and JSON); logs, the store and the summaries name a
target by scheme and host as apprise's privacy form shows them, and apprise's own
logger, which prints whole URLs at debug level, is cut off from the logging tree.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from harness.models import Host, NotifyRoute, Severity
from harness.states import State
from harness.wording import did_you_mean, kind_of

if TYPE_CHECKING:
    import apprise

    from harness.store import Store

__all__ = [
    "BOUND_S",
    "DEFAULT_SEVERITY",
    "Delivery",
    "Kind",
    "Notice",
    "Notifier",
    "check_routes",
    "notification_counts",
    "notify_event",
    "summary_lines",
]

log = logging.getLogger(__name__)

#: Seconds one delivery may take, from hand-over to verdict; also the most the end of a
#: run waits for deliveries still under way.
BOUND_S = 10.0


class Kind(enum.StrEnum):
    """What happened; `vet_notify` routes pick kinds by these names."""

    STAGE_FAILED = "StageFailed"
    SPEC_MISMATCH = "SpecMismatch"
    HOLDING_OPENED = "HoldingOpened"
    RUN_COMPLETED = "RunCompleted"


#: A kind's severity unless its sender says otherwise (RunCompleted: warning when a
#: host did not pass).
DEFAULT_SEVERITY: dict[Kind, Severity] = {
    Kind.STAGE_FAILED: Severity.CRITICAL,
    Kind.SPEC_MISMATCH: Severity.WARNING,
    Kind.HOLDING_OPENED: Severity.INFO,
    Kind.RUN_COMPLETED: Severity.INFO,
}
_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
_NOTIFY_TYPE = {Severity.INFO: "info", Severity.WARNING: "warning", Severity.CRITICAL: "failure"}
#: apprise sets ntfy's priority per URL, vet's severity is per event: fill the gap.
_NTFY_PRIORITY = {Severity.INFO: "default", Severity.WARNING: "high", Severity.CRITICAL: "max"}
_ROUTE_KEYS = ("url", "urls", "kinds", "min_severity")
_EXAMPLE = "vet_notify: [{url: 'ntfy://ntfy.example.net/vet', min_severity: warning}]"
_SOURCE = "notify"  # the events-table source of delivery records


#: True in a delivery's thread (apprise copies it into its own workers).
_SENDING: ContextVar[bool] = ContextVar("vet_notify_sending", default=False)
#: urllib3 logs each request's path at debug level; a Discord webhook's path is its token.
_HTTP_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager",
                 "urllib3.response", "urllib3.util.retry")
#: Every secret-looking piece of every target URL this process has seen (see _pieces).
_SECRET_PIECES: set[str] = set()
_LOCK = threading.Lock()


def _pieces(url: str, label: str) -> set[str]:
    """The parts of `url` that may be secret: user, password, path segments, query values
    (raw and decoded), and the host where apprise's privacy form (`label`) masks it."""
    try:
        parts = urlsplit(url)
        found = {parts.username, parts.password, *parts.path.split("/"),
                 *(pair.partition("=")[2] for pair in parts.query.split("&"))}
        if parts.hostname and parts.hostname not in label:
            found.add(parts.hostname)
    except ValueError:
        found = {url}
    found |= {unquote(p) for p in found if p}
    return {p for p in found if p and len(p) >= 3}


def _remember(url: str, label: str) -> None:
    with _LOCK:
        _SECRET_PIECES.update(_pieces(url, label))


def _redact(text: str, pieces: Iterable[str] | None = None) -> str:
    """`text` with every known secret piece (default: of every URL seen) masked."""
    if pieces is None:
        with _LOCK:
            pieces = set(_SECRET_PIECES)
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def _scrub(text: str, url: str, label: str) -> str:
    """apprise's failure text with the secret-looking parts of `url` masked."""
    return _redact(text, _pieces(url, label))


class _NotWhileSending(logging.Filter):
    """Drops HTTP-library records made for a notification (their URLs may hold tokens)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _SENDING.get()


class _AppriseRedaction(logging.Filter):
    """apprise's debug and info records go nowhere; its warnings are masked.

    apprise prints whole target URLs (tokens included) at debug level. Turning its
    propagation off is not enough: pytest attaches its log capture to non-propagating
    loggers too. A logger filter runs before every handler, apprise's own per-call
    capture (the failure reasons vet reports) included.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        record.msg, record.args = _redact(record.getMessage()), ()
        return True


def _apprise() -> Any:
    """apprise, imported on first use (0.3 s), with its logs and urllib3's for its requests
    kept from showing a URL (a run with --log-level=DEBUG must not print tokens)."""
    with _LOCK:
        logger = logging.getLogger("apprise")
        if not any(isinstance(f, _AppriseRedaction) for f in logger.filters):
            logger.addFilter(_AppriseRedaction())
            logger.addHandler(logging.NullHandler())
            logger.propagate = False  # vet logs each outcome itself, once
            for name in _HTTP_LOGGERS:
                logging.getLogger(name).addFilter(_NotWhileSending())
    import apprise

    return apprise


# --------------------------------------------------------------------------- configuration


def _scheme(url: str) -> str | None:
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return match.group(1).lower() if match else None


def _label(service: Any, scheme: str) -> str:
    """scheme://host as apprise's privacy form of the URL shows it (host masked if secret)."""
    try:
        shown = urlsplit(str(service.url(privacy=True)))
        host = shown.netloc.rpartition("@")[2]
    except ValueError:
        host = ""
    return f"{scheme}://{host or '?'}"


def _check_url(path: str, value: Any, problems: list[tuple[str, str]]) -> tuple[str, str] | None:
    """(url, label) when apprise can send to `value`; the value never enters a message."""
    if not isinstance(value, str) or not value.strip():
        problems.append((path, f"{path} is {kind_of(value)}; write an apprise URL like "
                               "ntfy://ntfy.example.net/vet (docs/NOTIFY.md)"))
        return None
    url = value.strip()
    scheme = _scheme(url)
    apprise = _apprise()
    if scheme is None:
        problems.append((path, f"{path} is not a URL (no scheme://; value not shown, it may "
                               "hold a secret); write e.g. ntfy://HOST/TOPIC, "
                               "discord://WEBHOOK_ID/TOKEN or mailtos://USER:PASSWORD@HOST"
                               "?to=ADDRESS"))
        return None
    if scheme not in apprise.manager_plugins.NotificationManager():
        problems.append((path, f"{path}: apprise has no service for scheme {scheme}://; use one "
                               "it supports (ntfy, ntfys, discord, mailto, mailtos, json, ... "
                               "docs/NOTIFY.md)"))
        return None
    service = apprise.Apprise.instantiate(url)
    if service is None:
        problems.append((path, f"{path}: apprise cannot use this {scheme}:// URL (value not "
                               "shown, it may hold a secret): a part it needs is missing or "
                               "malformed; see the URL forms in docs/NOTIFY.md"))
        return None
    label = _label(service, scheme)
    _remember(url, label)
    return url, label


def check_routes(
    value: Any, path: str = "vet_notify"
) -> tuple[tuple[NotifyRoute, ...], list[tuple[str, str]]]:
    """`vet_notify` as routes, plus every problem as (variable path, operator message).

    The inventory loader calls this for each host, so mistakes are reported with the file
    they came from, together with the inventory's other mistakes.
    """
    problems: list[tuple[str, str]] = []
    if not isinstance(value, list | tuple):
        problems.append((path, f"{path} is {kind_of(value)}; write a list of routes, e.g. "
                               f"{_EXAMPLE}"))
        return (), problems
    routes: list[NotifyRoute] = []
    for i, entry in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(entry, Mapping):
            problems.append((where, f"{where} is {kind_of(entry)}; write a route like "
                                    "{url: 'ntfy://ntfy.example.net/vet', min_severity: "
                                    "warning}"))
            continue
        before = len(problems)
        for key in entry:
            if key not in _ROUTE_KEYS:
                problems.append((f"{where}.{key}", f"{where}.{key} is not a route key"
                                 f"{did_you_mean(str(key), _ROUTE_KEYS)}; a route has "
                                 f"{', '.join(_ROUTE_KEYS)}"))
        if ("url" in entry) == ("urls" in entry):
            problems.append((where, f"{where} needs exactly one of url: (one target) or urls: "
                                    "(a list of targets)"))
            continue
        if "url" in entry:
            raw_urls: list[tuple[str, Any]] = [(f"{where}.url", entry["url"])]
        elif isinstance(entry["urls"], list | tuple) and entry["urls"]:
            raw_urls = [(f"{where}.urls[{j}]", u) for j, u in enumerate(entry["urls"])]
        else:
            problems.append((f"{where}.urls", f"{where}.urls is {kind_of(entry['urls'])}; "
                                              "write a list of apprise URLs"))
            continue
        kinds = _check_kinds(f"{where}.kinds", entry.get("kinds"), problems)
        severity = _check_severity(f"{where}.min_severity", entry.get("min_severity"), problems)
        targets = [_check_url(p, u, problems) for p, u in raw_urls]
        if len(problems) > before or kinds is None or severity is None:
            continue
        routes.extend(NotifyRoute(url=t[0], label=t[1], kinds=kinds, min_severity=severity)
                      for t in targets if t is not None)
    return tuple(routes), problems


def _check_kinds(path: str, value: Any, problems: list[tuple[str, str]]) -> frozenset[str] | None:
    if value is None:
        return frozenset(Kind)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not names:
        problems.append((path, f"{path} is {kind_of(value)}; write a list of kinds from "
                               f"{', '.join(Kind)}"))
        return None
    known = [str(k) for k in Kind]
    chosen = set()
    for j, name in enumerate(names):
        if name not in known:
            shown = repr(name) if isinstance(name, str) else kind_of(name)
            problems.append((f"{path}[{j}]", f"{path}[{j}] {shown} is not an event kind"
                             f"{did_you_mean(str(name), known)}; kinds: {', '.join(known)}"))
        else:
            chosen.add(str(name))
    return frozenset(chosen) if len(chosen) == len(names) else None


def _check_severity(path: str, value: Any, problems: list[tuple[str, str]]) -> Severity | None:
    if value is None:
        return Severity.INFO
    try:
        return Severity(value)
    except ValueError:
        shown = repr(value) if isinstance(value, str) else kind_of(value)
        problems.append((path, f"{path} {shown} is not a severity; write one of info, warning, "
                               "critical (the route gets events at or above it)"))
        return None


# --------------------------------------------------------------------------- sending


@dataclasses.dataclass(frozen=True)
class Notice:
    """One event worth telling someone about."""

    kind: Kind
    severity: Severity
    title: str
    body: str
    host: str | None = None  # None: about the whole run


@dataclasses.dataclass
class Delivery:
    """One notice on its way to one target: `ok` is None until it is settled."""

    kind: str
    severity: str
    host: str | None
    target: str
    at: float
    ok: bool | None = None
    why: str = ""
    duration_s: float = 0.0


def _with_severity(url: str, scheme: str | None, severity: Severity) -> str:
    """Give an ntfy URL without its own priority= the event's severity as priority."""
    if scheme not in ("ntfy", "ntfys") or "priority" in parse_qs(urlsplit(url).query):
        return url
    return f"{url}{'&' if '?' in url else '?'}priority={_NTFY_PRIORITY[severity]}"


class Notifier:
    """Routes notices to apprise URLs on background threads and counts the outcomes.

    `send` returns at once; each delivery is one apprise attempt bounded by `bound_s`
    (apprise's own call timeout, with the sockets' timeouts capped too). `drain` waits for
    deliveries under way at most `bound_s` and settles any left as failed.
    """

    def __init__(self, routes: Sequence[tuple[NotifyRoute, frozenset[str] | None]],
                 run_id: str, bound_s: float = BOUND_S) -> None:
        self.routes = tuple(routes)
        for route, _ in self.routes:
            _remember(route.url, route.label)
        self.run_id = run_id
        self.bound_s = bound_s
        self._cond = threading.Condition()
        self._deliveries: list[Delivery] = []
        self._recorded = 0

    @classmethod
    def for_hosts(cls, hosts: Sequence[Host], run_id: str, bound_s: float = BOUND_S) -> Notifier:
        """One notifier for a run: a host's events go to its own routes, run events to all."""
        owners: dict[NotifyRoute, set[str]] = {}
        for host in hosts:
            for route in host.notify:
                owners.setdefault(route, set()).add(host.name)
        return cls([(route, frozenset(names)) for route, names in owners.items()], run_id,
                   bound_s)

    # -- events

    def targets(self, notice: Notice) -> list[NotifyRoute]:
        """The routes that take `notice`, one per URL: its kind, at least their severity,
        and its host among theirs (a run event is for every route)."""
        chosen: dict[str, NotifyRoute] = {}
        for route, hosts in self.routes:
            if (notice.kind in route.kinds
                    and _RANK[notice.severity] >= _RANK[route.min_severity]
                    and (notice.host is None or hosts is None or notice.host in hosts)):
                chosen.setdefault(route.url, route)
        return list(chosen.values())

    def send(self, notice: Notice) -> int:
        """Hand `notice` to every route that takes it; returns how many targets (never waits)."""
        chosen = self.targets(notice)
        for route in chosen:
            delivery = Delivery(kind=notice.kind.value, severity=notice.severity.value,
                                host=notice.host, target=route.label, at=time.time())
            with self._cond:
                self._deliveries.append(delivery)
            worker = threading.Thread(target=self._deliver, args=(route, notice, delivery),
                                      name=f"vet-notify-{notice.kind.value}", daemon=True)
            try:
                worker.start()
            except RuntimeError as exc:  # interpreter shutting down, or out of threads
                self._settle(delivery, False, f"could not start a sender thread: {exc}", 0.0)
        return len(chosen)

    def notify(self, kind: Kind | str, *, host: str | None, title: str, body: str = "",
               severity: Severity | str | None = None) -> int:
        """Send one event of `kind` (severity: the kind's default unless given)."""
        kind = Kind(kind)
        level = DEFAULT_SEVERITY[kind] if severity is None else Severity(severity)
        text = f"{body}\n\nrun {self.run_id}" if body else f"run {self.run_id}"
        return self.send(Notice(kind, level, title, text, host))

    def host_failed(self, host: str, stage: str | None, reason: str) -> int:
        """StageFailed, or SpecMismatch when the failing stage is the spec check."""
        if stage == "spec":
            return self.notify(Kind.SPEC_MISMATCH, host=host, body=reason,
                               title=f"vet: {host} does not match its spec")
        return self.notify(Kind.STAGE_FAILED, host=host, body=reason,
                           title=f"vet: {host} failed stage {stage or '(before any stage)'}")

    def run_completed(self, status: str, hosts: Sequence[Mapping[str, Any]]) -> int:
        """RunCompleted from the store's host rows: info when every host passed, else warning.

        A host passed when it reached Completed and failed when it went to Failed (or on to
        Holding / Released); any other state is incomplete (as in the JSON summary).
        """
        failed_states = {State.FAILED.value, State.HOLDING.value, State.RELEASED.value}
        passed = [h for h in hosts if h["state"] == State.COMPLETED.value]
        failed = [h for h in hosts if h["state"] in failed_states]
        incomplete = len(hosts) - len(passed) - len(failed)
        title = f"vet run {self.run_id} {status}: {len(passed)} of {len(hosts)} hosts passed"
        lines = [f"{len(passed)} passed, {len(failed)} failed, {incomplete} incomplete"]
        lines += [f"- {h['name']}: {h.get('reason') or h['state']}" for h in failed]
        clean = not failed and not incomplete and status == "passed"
        return self.notify(Kind.RUN_COMPLETED, host=None, title=title, body="\n".join(lines),
                           severity=Severity.INFO if clean else Severity.WARNING)

    # -- delivery (background threads)

    def _deliver(self, route: NotifyRoute, notice: Notice, delivery: Delivery) -> None:
        _SENDING.set(True)  # this thread's own context: only its HTTP logs are dropped
        started = time.monotonic()
        try:
            ok, why = self._attempt(route, notice)
        except Exception as exc:  # a sender must never raise into nothing
            ok, why = False, f"{type(exc).__name__} in apprise (details withheld)"
        self._settle(delivery, ok, why, time.monotonic() - started)

    def _attempt(self, route: NotifyRoute, notice: Notice) -> tuple[bool, str]:
        apprise = _apprise()
        asset = apprise.AppriseAsset(storage_mode="memory", service_timeout=self.bound_s)
        url = _with_severity(route.url, _scheme(route.url), notice.severity)
        service = apprise.Apprise.instantiate(url, asset=asset)
        if service is None:
            return False, "apprise could not load the URL"
        # The call timeout below is what bounds the delivery; these make the socket of an
        # abandoned attempt give up soon after, so its thread ends too.
        service.socket_connect_timeout = min(service.socket_connect_timeout, self.bound_s)
        service.socket_read_timeout = min(service.socket_read_timeout, self.bound_s)
        sender = apprise.Apprise(asset=asset)
        sender.add(service)
        notify_type = ("success" if notice.kind is Kind.RUN_COMPLETED
                       and notice.severity is Severity.INFO else _NOTIFY_TYPE[notice.severity])
        result = sender.notify(body=notice.body, title=notice.title, notify_type=notify_type,
                               timeout=max(self.bound_s - 0.5, 0.1))
        if result:
            return True, ""
        return False, self._why(result, route)

    def _why(self, result: apprise.AppriseResult, route: NotifyRoute) -> str:
        if result.timeout_count:
            return f"no answer within {self.bound_s:g} s"
        for entry in result.logs():
            if entry.level in ("WARNING", "ERROR", "CRITICAL"):
                return _scrub(str(entry.message), route.url, route.label)[:300]
        return "apprise reported a failure"

    def _settle(self, delivery: Delivery, ok: bool, why: str, duration_s: float) -> None:
        """The first verdict on a delivery counts; logged before a drain() can see it."""
        with self._cond:
            if delivery.ok is not None:
                return
            about = f" for {delivery.host}" if delivery.host else ""
            if ok:
                log.info("notification %s%s sent to %s in %.2f s", delivery.kind, about,
                         delivery.target, duration_s)
            else:
                log.warning("notification %s%s to %s failed: %s", delivery.kind, about,
                            delivery.target, why)
            delivery.ok, delivery.why, delivery.duration_s = ok, why, round(duration_s, 3)
            self._cond.notify_all()

    # -- the end of a run

    def drain(self, timeout: float | None = None) -> bool:
        """Wait for deliveries under way, at most `timeout` (default the bound).

        Any still unsettled then is counted as failed; returns True if none was left.
        """
        deadline = time.monotonic() + (self.bound_s if timeout is None else timeout)
        with self._cond:
            while any(d.ok is None for d in self._deliveries):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            late = [d for d in self._deliveries if d.ok is None]
        for delivery in late:
            self._settle(delivery, False, "still sending when the run ended",
                         time.time() - delivery.at)
        return not late

    def deliveries(self) -> list[Delivery]:
        with self._cond:
            return [dataclasses.replace(d) for d in self._deliveries]

    def counts(self) -> dict[str, dict[str, int]]:
        """kind -> {"sent": n, "failed": n} over settled deliveries, every kind listed."""
        return _tally((d.kind, d.ok) for d in self.deliveries())

    def record(self, store: Store) -> None:
        """Write deliveries settled since the last call to the store's events, one row each
        (up to the first one still under way, so each is written once)."""
        with self._cond:
            fresh = []
            for delivery in self._deliveries[self._recorded:]:
                if delivery.ok is None:
                    break
                fresh.append(delivery)
            self._recorded += len(fresh)
        for d in fresh:
            store.add_event(self.run_id, d.host, _SOURCE, "notification", {
                "kind": d.kind, "severity": d.severity, "target": d.target, "ok": d.ok,
                "why": d.why, "duration_s": d.duration_s, "at": d.at})

    # -- the process-wide notifier notify_event() uses

    def activate(self) -> Notifier:
        with _ACTIVE_LOCK:
            _ACTIVE.append(self)
        return self

    def deactivate(self) -> None:
        with _ACTIVE_LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)


_ACTIVE: list[Notifier] = []
_ACTIVE_LOCK = threading.Lock()


def _tally(outcomes: Iterable[tuple[Any, bool | None]]) -> dict[str, dict[str, int]]:
    counts = {str(k): {"sent": 0, "failed": 0} for k in Kind}
    for kind, ok in outcomes:
        if ok is None:
            continue
        counts.setdefault(kind, {"sent": 0, "failed": 0})["sent" if ok else "failed"] += 1
    return counts


def notify_event(kind: Kind | str, *, host: str | None, title: str, body: str = "",
                 severity: Severity | str | None = None) -> int:
    """Tell the run's notification targets about an event; never waits, never raises for
    a delivery problem.

    For code running inside a vet run (the pytest plugin activates the run's notifier),
    e.g. HoldingOpened when a failed host is held:
        notify_event(Kind.HOLDING_OPENED, host="node07", title="vet: node07 held for you",
                     body="ssh -i ... root@10.0.0.7; expires 2026-11-23 09:00 UTC")
    `body` gets the run id appended. Returns how many targets the event went to (0 with
    no active run or no route for it).
    """
    with _ACTIVE_LOCK:
        notifier = _ACTIVE[-1] if _ACTIVE else None
    if notifier is None:
        return 0
    return notifier.notify(kind, host=host, title=title, body=body, severity=severity)


# --------------------------------------------------------------------------- summaries


def notification_counts(store: Store, run_id: str) -> dict[str, dict[str, int]]:
    """kind -> {"sent", "failed"} for a run, from every process's delivery records."""
    rows = store.query("SELECT payload_json FROM events WHERE run_id = ? AND source = ? AND "
                       "kind = 'notification' ORDER BY id", (run_id, _SOURCE))
    payloads = [json.loads(r["payload_json"]) for r in rows]
    return _tally((p.get("kind"), p.get("ok")) for p in payloads)


def summary_lines(store: Store, run_id: str) -> list[str]:
    """The terminal summary's notification lines; none when nothing was sent."""
    rows = store.query("SELECT host, payload_json FROM events WHERE run_id = ? AND source = ? "
                       "AND kind = 'notification' ORDER BY id", (run_id, _SOURCE))
    if not rows:
        return []
    counts = notification_counts(store, run_id)
    parts = [f"{kind} {c['sent']} sent" + (f", {c['failed']} failed" if c["failed"] else "")
             for kind, c in counts.items() if c["sent"] or c["failed"]]
    lines = ["notifications: " + "; ".join(parts)]
    for row in rows:
        p = json.loads(row["payload_json"])
        if not p.get("ok"):
            about = f" ({row['host']})" if row["host"] else ""
            lines.append(f"  {p.get('kind')}{about} -> {p.get('target')}: {p.get('why')}")
    return lines
