"""Run tokens never reach the event log, evidence or stored records: the host's kernel
command line carries its token, and `dmesg` (run by every stress stage) prints it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.console.local import LocalChannel
from harness.events import REDACTED_TOKEN, TOKEN_SHAPE, EventLog, read_events
from harness.evidence import Evidence
from harness.host import HostUnderTest, RunContext
from harness.models import Connection, Host
from harness.store import Store
from harness.token import make_token

KEY = b"k" * 32


def token(expires_at: int = 1_790_000_000) -> str:
    return make_token(KEY, run_id="r1", host="vm", mac="52:54:00:00:00:01",
                      expires_at=expires_at)


def dmesg_line(tok: str) -> str:
    return (f"[    0.000000] Kernel command line: BOOT_IMAGE=vmlinuz vet.run=r1 "
            f"vet.token={tok} vet.ssh=AAAA console=ttyS0")


@pytest.mark.parametrize("expires_at", [0, 7, 1_790_000_000, 999_999_999_999])
def test_the_shape_is_harness_tokens_shape(expires_at: int) -> None:
    assert TOKEN_SHAPE.fullmatch(token(expires_at))


def test_event_log_and_its_listeners_get_the_token_redacted(tmp_path: Path) -> None:
    tok = token()
    log = EventLog(tmp_path / "events.jsonl", "r1", "vm")
    heard: list[dict[str, Any]] = []
    log.subscribe(heard.append)
    log.emit("ssh", "line", "c1", stream="stdout", text=dmesg_line(tok))
    log.emit("ssh", "line", "c1", stream="stdout", text="v1.2.3 is a version, not a token")
    log.close()
    assert tok not in (tmp_path / "events.jsonl").read_text()
    written = read_events(tmp_path / "events.jsonl")
    assert written[0]["text"] == dmesg_line(REDACTED_TOKEN)
    assert written[1]["text"] == "v1.2.3 is a version, not a token"
    assert [e["text"] for e in heard] == [e["text"] for e in written]


def test_a_console_batch_and_its_listeners_get_the_token_redacted(tmp_path: Path) -> None:
    """The console goes to the log one event per read (EventLog.emit_lines): a token in any
    of its lines is redacted in the file and in what listeners (MQTT, live views) get."""
    tok = token()
    log = EventLog(tmp_path / "events.jsonl", "r1", "vm")
    heard: list[dict[str, Any]] = []
    log.subscribe(heard.append)
    lines = ["[    0.000000] Linux version 6.1.0", dmesg_line(tok), f"again {tok} and {tok}",
             "v1.2.3 is a version, not a token"]
    log.emit_lines("console", lines, 1_700_000_000.5)
    log.close()
    assert tok not in (tmp_path / "events.jsonl").read_text()
    [written] = read_events(tmp_path / "events.jsonl")
    assert written["lines"] == [lines[0], dmesg_line(REDACTED_TOKEN),
                                f"again {REDACTED_TOKEN} and {REDACTED_TOKEN}", lines[3]]
    assert written["at"] == 1_700_000_000.5 and written["kind"] == "lines"
    assert heard == [written]


def test_evidence_text_is_redacted(tmp_path: Path) -> None:
    tok = token()
    path = Evidence(tmp_path).attach("$ dmesg", dmesg_line(tok))
    assert path.read_text() == dmesg_line(REDACTED_TOKEN)


def test_records_are_stored_and_attached_redacted(tmp_path: Path) -> None:
    tok = token()
    with Store(tmp_path / "vet.sqlite") as store:
        ctx = RunContext("r1", "quick", store, tmp_path / "runs" / "r1")
        host = HostUnderTest(Host("vm", Connection("local")), LocalChannel("vm"), ctx, {})
        try:
            host.enter_stage("memory")
            host.record("kernel log", {"lines": [dmesg_line(tok)], "count": 1})
        finally:
            host.close()
        [row] = store.records("r1", "vm")
        assert json.loads(row["json"]) == {"lines": [dmesg_line(REDACTED_TOKEN)], "count": 1}
        stage_dir = tmp_path / "runs" / "r1" / "vm" / "memory"
        assert not [p for p in stage_dir.iterdir() if tok in p.read_text()]
        assert tok not in (tmp_path / "runs" / "r1" / "vm" / "events.jsonl").read_text()
