"""`vet console HOST` under a real pty (pexpect) on a real shell behind a TCP console.

The console is tests/fixtures/serial_bridge.py's socat endpoint (one client, like
ser2net or QEMU's socket chardev); "a run holding it" is a real SerialChannel logged
in from this test process, which locks and shares the console as a run's does.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from harness.cli import main
from harness.cli_console import EscapeKeys, console_log_for
from harness.console.lock import holder
from harness.console.serial import SerialChannel
from harness.store import Store
from tests.fixtures.serial_bridge import PASSWORD, USER, SerialEndpoint, logged_in

VET = Path(sys.executable).parent / "vet"
DETACH = b"\x1dq"


@pytest.fixture(autouse=True)
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private runtime dir (short: a Unix socket path must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="vrt-"))
    monkeypatch.setenv("VET_RUNTIME_DIR", str(path))
    yield path
    leftovers = list((path / "consoles").glob("*")) if (path / "consoles").exists() else []
    shutil.rmtree(path)
    assert leftovers == [], "the console lock or share socket was left behind"


@pytest.fixture
def inventory(tmp_path: Path, serial_endpoint: SerialEndpoint) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text(
        "all:\n  hosts:\n"
        f"    node01: {{ansible_connection: local, vet_console: '{serial_endpoint.url}'}}\n"
        "    node02: {ansible_connection: local}\n")
    return path


def spawn_console(tmp_path: Path, inventory: Path, *extra: str) -> pexpect.spawn:
    """`vet console node01` on a fresh pty, between two `stty -g` of that pty."""
    script = (f"stty -g; {VET} --reports-dir {tmp_path / 'reports'} console node01 "
              f"--inventory {inventory} {' '.join(extra)}; echo VET-RC=$?; stty -g")
    child = pexpect.spawn("bash", ["--norc", "--noprofile", "-c", script], cwd=str(tmp_path),
                          timeout=30, dimensions=(24, 160))
    child.delayafterread = None
    return child


def stty_line(child: pexpect.spawn) -> bytes:
    child.expect(rb"([0-9a-f]+(?::[0-9a-f]+){10,})\r\n")
    return bytes(child.match.group(1))


def finish(child: pexpect.spawn, before: bytes) -> None:
    """Detach; vet exits 0 and the terminal is as it was before vet ran."""
    child.send(DETACH)
    child.expect_exact(b"VET-RC=0")
    after = stty_line(child)
    child.expect(pexpect.EOF)
    child.close()
    assert after == before, "vet console left the terminal in raw mode"


def test_read_write_attach_logs_in_runs_a_command_and_detaches(
        tmp_path: Path, inventory: Path, runtime_dir: Path) -> None:
    child = spawn_console(tmp_path, inventory)
    before = stty_line(child)
    child.expect_exact(b"read-write")
    child.expect_exact(b"Ctrl-] q detaches")
    assert (holder(open_url(inventory)) or {})["purpose"] == "vet console"
    child.expect_exact(b"login: ")  # the getty prompt, replayed or fresh
    child.send(USER.encode() + b"\r")
    child.expect_exact(b"Password: ")
    child.send(PASSWORD.encode() + b"\r")
    child.expect_exact(b"vet-host:")
    child.send(b"echo hello-$((6*7))\r")
    child.expect_exact(b"hello-42")
    finish(child, before)
    log = (tmp_path / "reports" / "consoles" / "node01.log").read_text()
    assert "hello-42" in log and f"vet: opened {open_url(inventory)}" in log
    assert PASSWORD not in log  # typed at "Password:", never echoed, never logged
    assert holder(open_url(inventory)) is None


def open_url(inventory: Path) -> str:
    found = re.search(r"vet_console: '([^']+)'", inventory.read_text())
    assert found
    return found.group(1)


@pytest.fixture
def run_console(serial_endpoint: SerialEndpoint, tmp_path: Path) -> Iterator[SerialChannel]:
    """The console as a run drives it: logged in, locked and shared (tmp_path/console.log)."""
    channel = logged_in(serial_endpoint.url, tmp_path)
    yield channel
    channel.close()


def test_while_a_run_drives_the_console_attach_is_read_only(
        tmp_path: Path, inventory: Path, run_console: SerialChannel) -> None:
    child = spawn_console(tmp_path, inventory)
    before = stty_line(child)
    child.expect_exact(b"READ-ONLY (a run is driving it; --force to type)")
    child.expect_exact(str(tmp_path / "console.log").encode())
    assert run_console.run("echo from-run-$((2+3))", timeout=10).stdout == "from-run-5\n"
    child.expect_exact(b"from-run-5")  # the viewer sees the run's session live
    child.send(b"echo typed-$((1+1))\r")
    child.expect_exact(b"read-only: typing is ignored")
    finish(child, before)
    # The run's session was never disturbed, and the keys never reached the host.
    assert run_console.run("echo still-$((4+4))", timeout=10).stdout == "still-8\n"
    assert "typed-2" not in (tmp_path / "console.log").read_text()


def test_force_types_on_the_console_a_run_is_driving(
        tmp_path: Path, inventory: Path, run_console: SerialChannel) -> None:
    child = spawn_console(tmp_path, inventory, "--force")
    before = stty_line(child)
    child.expect_exact(b"read-write (FORCED")
    child.send(b"echo forced-$((3*3))\r")
    child.expect_exact(b"forced-9")
    finish(child, before)
    # The run's console log recorded what the operator's command printed.
    assert "forced-9" in (tmp_path / "console.log").read_text()
    run_console.sync(timeout=10)
    assert run_console.run("echo after-$((1+2))", timeout=10).stdout == "after-3\n"


def test_console_log_is_the_running_runs_else_reports_consoles(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    args = argparse.Namespace(reports_dir=str(reports), store=None)
    assert console_log_for(args, "node01") == reports / "consoles" / "node01.log"
    with Store(reports / "vet.sqlite") as store:
        store.start_run("r1", "quick", "inv")
        store.register_host("r1", "node01")
    assert console_log_for(args, "node01") == reports / "runs" / "r1" / "node01" / "console.log"
    assert console_log_for(args, "node02") == reports / "consoles" / "node02.log"
    with Store(reports / "vet.sqlite") as store:
        store.finish_run("r1", "passed")
    assert console_log_for(args, "node01") == reports / "consoles" / "node01.log"


def test_escape_keys() -> None:
    keys = EscapeKeys()
    assert keys.feed(b"ls\r") == (b"ls\r", None)
    assert keys.feed(b"ab\x1d") == (b"ab", None)  # Ctrl-] waits for the next key
    assert keys.feed(b"\x1d") == (b"\x1d", None)  # Ctrl-] Ctrl-] types one
    assert keys.feed(b"\x1dx") == (b"\x1dx", None)  # not a command: both go through
    assert keys.feed(b"\x1d?") == (b"", "help")
    assert keys.feed(b"x\x1dq") == (b"x", "detach")


@pytest.mark.parametrize(("name", "expected"), [
    ("node02", "host node02 has no vet_console; set it to the console's URL"),
    ("node99", "no host 'node99'; hosts: node01, node02"),
])
def test_bad_host_gets_a_clear_error(inventory: Path, name: str, expected: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["console", name, "--inventory", str(inventory)]) == 2
    assert expected in capsys.readouterr().err


def test_no_terminal_is_a_clear_error(tmp_path: Path, inventory: Path) -> None:
    child = pexpect.spawn("bash", ["-c", f"{VET} console node01 --inventory {inventory} "
                                         "</dev/null"], cwd=str(tmp_path), timeout=30)
    child.expect(pexpect.EOF)
    child.close()
    assert b"vet console needs a terminal" in (child.before or b"")
    assert child.exitstatus == 2
    assert os.path.exists(tmp_path) and holder(open_url(inventory)) is None
