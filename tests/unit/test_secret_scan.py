"""The secret scanner used by the lab run's secrets check: it must find a secret wherever
a run could hide one (SQLite overflow pages, base64 report entries, key material)."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.fixtures.secret_scan import (
    private_key_secrets,
    private_keys_under,
    scan_tree,
    traced_commands,
)

SECRET = b"bmc-pw-7f3a9c2e11"
SECRETS = {"BMC password": SECRET}


def test_clean_tree_has_no_findings_but_was_searched(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text('{"kind": "power-on", "password": "***"}\n')
    scan = scan_tree(tmp_path, SECRETS)
    assert scan.files == [tmp_path / "events.jsonl"] and scan.findings == []


def test_secret_split_over_sqlite_overflow_pages_is_found(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "vet.sqlite")
    db.execute("PRAGMA page_size = 1024")
    db.execute("CREATE TABLE events (payload TEXT)")
    # The secret straddles a page boundary, so its bytes are not contiguous in the file.
    db.execute("INSERT INTO events VALUES (?)", ("x" * 90 + SECRET.decode() + "y" * 3000,))
    db.commit()
    db.close()
    assert SECRET not in (tmp_path / "vet.sqlite").read_bytes()  # split: bytes alone miss it
    findings = scan_tree(tmp_path, SECRETS).findings
    assert any("table events: BMC password" in f for f in findings), findings


def test_base64_attachment_in_a_single_file_report_is_found(tmp_path: Path) -> None:
    attachment = base64.b64encode(b"$ ipmitool ... -P " + SECRET + b" power on").decode()
    (tmp_path / "report.html").write_text(f'<script>d("data/attachments/a.txt","{attachment}")'
                                          "</script>")
    findings = scan_tree(tmp_path, SECRETS).findings
    assert any("entry data/attachments/a.txt: BMC password" in f for f in findings), findings


def test_any_run_token_is_a_finding(tmp_path: Path) -> None:
    token = "v1.1790000000." + "A" * 43
    (tmp_path / "console.log").write_text(f"BOOT_IMAGE=/vmlinuz vet.token={token} quiet\n")
    assert len(scan_tree(tmp_path, {}).findings) == 1


def test_private_key_material(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "id_ed25519").write_bytes(pem)
    (tmp_path / "keys" / "id_ed25519.pub").write_text("ssh-ed25519 AAAA... vet")
    secrets = private_keys_under(tmp_path / "keys")
    assert secrets == private_key_secrets(str(tmp_path / "keys" / "id_ed25519"), pem)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    assert raw.hex().encode() in secrets.values()
    body_line = pem.splitlines()[2]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "evidence.txt").write_bytes(b"leaked: " + body_line)
    assert scan_tree(tmp_path / "out", secrets).findings


def test_strace_lines_parse_to_argv(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    trace.write_text(
        '123 execve("/usr/bin/ipmitool", ["ipmitool", "-I", "lanplus", "-E", "power", '
        '"on"], 0x7ffe /* 35 vars */) = 0\n'
        '124 execve("/bin/sh", ["sh", "-c", "echo \\"a b\\""], 0x5 /* 3 vars */) = 0\n'
        "125 +++ exited with 0 +++\n")
    assert traced_commands(trace) == [["ipmitool", "-I", "lanplus", "-E", "power", "on"],
                                      ["sh", "-c", 'echo "a b"']]
