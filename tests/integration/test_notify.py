"""Notifications reach real local receivers on 127.0.0.1: an HTTP server standing in for
ntfy, an SMTP server (aiosmtpd), a receiver that accepts and never answers, a dead port;
Discord is the one target whose HTTP request is intercepted. Last, a real inner pytest
run (xdist, the local inventory plus vet_notify) sends StageFailed and RunCompleted."""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from harness.models import NotifyRoute
from harness.notify import BOUND_S, Kind, Notifier, check_routes, notification_counts
from harness.report import build_summary
from harness.store import Store

ROOT = Path(__file__).resolve().parents[2]
SMTP_PASSWORD = "sm7p-Pa55-8842"
NTFY_PASSWORD = "ntfy-Pa55-1199"
DISCORD_TOKEN = "dIsCoRd-t0ken-5521"
WAIT_S = 15.0  # a receiver's deadline for a message that should come at once


# --------------------------------------------------------------------------- receivers


class FakeNtfy:
    """ntfy's publish endpoint: records each POST (path, headers, JSON body) and says 200."""

    def __init__(self) -> None:
        self.posts: queue.Queue[dict[str, Any]] = queue.Queue()
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                posts.put({"path": self.path, "headers": dict(self.headers),
                           "json": json.loads(body)})
                answer = json.dumps({"id": "x1", "event": "message"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # no stderr noise per request

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, topic: str = "vet", auth: str = "") -> str:
        return f"ntfy://{auth}127.0.0.1:{self.port}/{topic}"

    def next(self) -> dict[str, Any]:
        return self.posts.get(timeout=WAIT_S)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


class Silent:
    """Accepts connections and never answers (a receiver that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # shut down
                return
            self.conns.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.sock.close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        for conn in self.conns:
            conn.close()


def dead_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _no_sender_left() -> Iterator[None]:
    """Every delivery thread a test started has ended within the bound after it."""
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("vet-notify-"):
            thread.join(timeout=BOUND_S + 1)
            assert not thread.is_alive(), f"{thread.name} still running"


@pytest.fixture
def ntfy() -> Iterator[FakeNtfy]:
    server = FakeNtfy()
    yield server
    server.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    yield server
    server.close()


class Mailbox:
    """aiosmtpd handler: keeps each message and checks the login."""

    def __init__(self) -> None:
        self.messages: queue.Queue[tuple[Envelope, Message]] = queue.Queue()
        self.logins: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.put((envelope, message_from_bytes(content)))
        return "250 Message accepted for delivery"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"vetbot" \
            and auth_data.password == SMTP_PASSWORD.encode()
        self.logins.append(auth_data.login if isinstance(auth_data, LoginPassword) else b"?")
        return AuthResult(success=ok)


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = dead_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=box.authenticate,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    yield box, port
    controller.stop()


def routes(*urls: str, **extra: object) -> list[tuple[NotifyRoute, frozenset[str] | None]]:
    found, problems = check_routes([{"url": u, **extra} for u in urls])
    assert problems == []
    return [(r, None) for r in found]


# --------------------------------------------------------------------------- the targets


def test_ntfy_gets_title_body_and_a_priority_from_the_severity(ntfy: FakeNtfy) -> None:
    notifier = Notifier(routes(ntfy.url()), "run-7")
    assert notifier.host_failed("node01", "cpu", "cpu: 3 MCEs logged during stress") == 1
    post = ntfy.next()
    assert post["json"]["topic"] == "vet"
    assert post["json"]["title"] == "vet: node01 failed stage cpu"
    assert "cpu: 3 MCEs logged during stress" in post["json"]["message"]
    assert "run run-7" in post["json"]["message"]
    assert post["headers"]["X-Priority"] == "max"  # critical

    notifier.host_failed("node02", "spec", "spec: cpu.threads: 2 found, 4 expected")
    post = ntfy.next()
    assert post["json"]["title"] == "vet: node02 does not match its spec"
    assert post["headers"]["X-Priority"] == "high"  # SpecMismatch is a warning

    assert notifier.drain()
    counts = notifier.counts()
    assert counts["StageFailed"] == {"sent": 1, "failed": 0}
    assert counts["SpecMismatch"] == {"sent": 1, "failed": 0}


def test_a_route_gets_only_its_kinds_and_severities(ntfy: FakeNtfy) -> None:
    notifier = Notifier(routes(ntfy.url("pager"), min_severity="critical")
                        + routes(ntfy.url("runs"), kinds=["RunCompleted"]), "run-8")
    assert notifier.notify(Kind.HOLDING_OPENED, host="node01", title="held") == 0
    assert notifier.run_completed("passed", [{"name": "node01", "state": "Completed"}]) == 1
    post = ntfy.next()
    assert post["json"]["topic"] == "runs"
    assert post["json"]["title"] == "vet run run-8 passed: 1 of 1 hosts passed"
    assert "X-Priority" not in post["headers"]  # info: ntfy's default priority
    assert notifier.drain()
    assert ntfy.posts.empty()


def test_secrets_in_urls_stay_out_of_logs(ntfy: FakeNtfy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # apprise and urllib3 print URLs at debug level
    notifier = Notifier(routes(ntfy.url(auth=f"vet:{NTFY_PASSWORD}@")), "run-9")
    notifier.host_failed("node01", "memory", "memory: EDAC UE")
    post = ntfy.next()
    assert post["headers"]["Authorization"].startswith("Basic ")  # the password was used
    assert notifier.drain()
    assert f"ntfy://127.0.0.1:{ntfy.port}" in caplog.text  # where it went: scheme and host
    assert NTFY_PASSWORD not in caplog.text


def test_email_through_smtp_with_a_password(
    smtp: tuple[Mailbox, int], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    box, port = smtp
    caplog.set_level(logging.DEBUG)
    url = (f"mailto://vetbot:{SMTP_PASSWORD}@127.0.0.1:{port}"
           "?to=ops@lab.example&from=vet@lab.example")
    notifier = Notifier(routes(url), "run-10")
    notifier.host_failed("node03", "storage", "storage: /dev/sda: 12 pending sectors")
    envelope, message = box.messages.get(timeout=WAIT_S)
    assert envelope.rcpt_tos == ["ops@lab.example"]
    assert message["Subject"] == "vet: node03 failed stage storage"
    body = message.get_payload(decode=True) if not message.is_multipart() else \
        message.get_payload(0).get_payload(decode=True)  # type: ignore[union-attr]
    assert isinstance(body, bytes)
    assert b"12 pending sectors" in body
    assert box.logins == [b"vetbot"]
    assert notifier.drain()
    assert notifier.counts()["StageFailed"] == {"sent": 1, "failed": 0}
    with Store(tmp_path / "vet.sqlite") as store:
        notifier.record(store)
        rows = store.query("SELECT * FROM events")
    assert len(rows) == 1 and f"mailto://127.0.0.1:{port}" in rows[0]["payload_json"]
    assert SMTP_PASSWORD not in caplog.text + json.dumps(rows)


def test_discord_request_intercepted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Discord is the one target not run here: apprise's HTTP call for it is replaced."""
    import apprise.plugins.discord as discord

    caplog.set_level(logging.DEBUG)
    seen: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    real_post = requests.post

    def post(url: str, **kwargs: Any) -> requests.Response:
        if not url.startswith("https://discord.com/"):
            return real_post(url, **kwargs)
        seen.put((url, json.loads(kwargs["data"])))
        answer = requests.Response()
        answer.status_code = 204
        answer._content = b""
        return answer

    monkeypatch.setattr(discord.requests, "post", post)  # type: ignore[attr-defined]
    notifier = Notifier(routes(f"discord://4711/{DISCORD_TOKEN}"), "run-11")
    notifier.notify(Kind.HOLDING_OPENED, host="node07", title="vet: node07 held for you",
                    body="ssh -i /var/lib/vet/holds/node07 root@10.0.0.7")
    url, payload = seen.get(timeout=WAIT_S)
    assert url == f"https://discord.com/api/webhooks/4711/{DISCORD_TOKEN}"
    text = json.dumps(payload)
    assert "vet: node07 held for you" in text and "root@10.0.0.7" in text
    assert notifier.drain()
    assert notifier.counts()["HoldingOpened"] == {"sent": 1, "failed": 0}
    assert "discord://4...1" in caplog.text
    assert DISCORD_TOKEN not in caplog.text


# --------------------------------------------------------------------------- failures


def test_a_dead_port_is_counted_as_failed(caplog: pytest.LogCaptureFixture) -> None:
    port = dead_port()
    notifier = Notifier(routes(f"ntfy://127.0.0.1:{port}/vet"), "run-12")
    notifier.host_failed("node01", "cpu", "cpu: boom")
    assert notifier.drain()
    [delivery] = notifier.deliveries()
    assert delivery.ok is False and delivery.target == f"ntfy://127.0.0.1:{port}"
    assert delivery.duration_s < BOUND_S
    assert notifier.counts()["StageFailed"] == {"sent": 0, "failed": 1}
    assert f"notification StageFailed for node01 to ntfy://127.0.0.1:{port} failed" \
        in caplog.text


@pytest.mark.parametrize("params", ["", "?rto=30"], ids=["own-timeout", "slow-target"])
def test_a_receiver_that_hangs_never_holds_up_the_sender(silent: Silent, params: str) -> None:
    """apprise's ntfy gives up after its 4 s read timeout; a target allowed longer (rto=30)
    is cut off by vet's bound. Either way the sender never waits and the failure is
    counted within the bound."""
    notifier = Notifier(routes(f"ntfy://127.0.0.1:{silent.port}/vet{params}"), "run-13")
    started = time.monotonic()
    notifier.host_failed("node01", "cpu", "cpu: boom")
    handed_over = time.monotonic() - started
    assert handed_over < 0.5, "send() waited for the receiver"
    assert silent.accepted.wait(WAIT_S)  # the request did reach it
    assert notifier.counts()["StageFailed"] == {"sent": 0, "failed": 0}  # still under way
    # The end of a run waits at most the bound, and by then the failure is counted.
    assert notifier.drain()
    waited = time.monotonic() - started
    assert waited <= BOUND_S + 0.5, waited
    [delivery] = notifier.deliveries()
    assert delivery.ok is False
    if params:
        assert waited >= BOUND_S - 1.5, waited
        assert delivery.why == f"no answer within {BOUND_S:g} s"
    else:
        assert "Connection error" in delivery.why
    assert notifier.counts()["StageFailed"] == {"sent": 0, "failed": 1}


def test_drain_gives_up_at_its_deadline(silent: Silent) -> None:
    notifier = Notifier(routes(f"ntfy://127.0.0.1:{silent.port}/vet"), "run-14")
    notifier.host_failed("node01", "cpu", "cpu: boom")
    started = time.monotonic()
    assert notifier.drain(timeout=0.3) is False
    assert time.monotonic() - started < 1.0
    [delivery] = notifier.deliveries()
    assert delivery.ok is False and delivery.why == "still sending when the run ended"


# --------------------------------------------------------------------------- a real run


FAILING_SUITE = """\
import pytest

pytestmark = [pytest.mark.stage, pytest.mark.cpu]


def test_cpu_burns(host):
    assert host.run("true").ok
    assert False, "CPU 3 lost its mind"
"""


def test_a_real_run_sends_stage_failed_and_run_completed(
    pytester: pytest.Pytester, ntfy: FakeNtfy
) -> None:
    dead = dead_port()
    inventory = pytester.path / "inv"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text((ROOT / "inventory/local/hosts.yml").read_text())
    (inventory / "group_vars/all.yml").write_text(
        f"vet_notify:\n"
        f"  - url: {ntfy.url()}\n"
        f"  - url: json://127.0.0.1:{dead}/vet\n"
        f"    kinds: [RunCompleted]\n")
    pytester.makepyfile(test_cpu=FAILING_SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "--inventory", "inv", "--run-id", "notify-run",
        "--store", "vet.sqlite", "--reports-dir", "reports", "-p", "no:cacheprovider",
        "-n", "1", "-m", "stage", timeout=300,
    )
    result.assert_outcomes(failed=1)
    first, second = ntfy.next(), ntfy.next()
    assert first["json"]["title"] == "vet: localhost failed stage cpu"
    assert "CPU 3 lost its mind" in first["json"]["message"]
    assert first["headers"]["X-Priority"] == "max"
    assert second["json"]["title"] == "vet run notify-run failed: 0 of 1 hosts passed"
    assert "- localhost: cpu: " in second["json"]["message"]
    assert second["headers"]["X-Priority"] == "high"
    result.stdout.fnmatch_lines([
        "notifications: StageFailed 1 sent; RunCompleted 1 sent, 1 failed",
        f"  RunCompleted -> json://127.0.0.1:{dead}: *",
    ])
    with Store(pytester.path / "vet.sqlite") as store:
        expected = {"sent": 0, "failed": 0}
        counts = notification_counts(store, "notify-run")
        assert counts == {"StageFailed": {"sent": 1, "failed": 0}, "SpecMismatch": expected,
                          "HoldingOpened": expected, "RunCompleted": {"sent": 1, "failed": 1}}
        assert build_summary(store, "notify-run")["notifications"] == counts
        hosts = {row["host"] for row in store.query(
            "SELECT host FROM events WHERE source = 'notify'")}
    assert hosts == {"localhost", None}  # the worker's host event, the controller's run event
