"""Live per-host lines in pytest's own terminal, from a real pytest run of a tiny suite
(the local inventory; the test calls host.progress). Under a pty (pexpect) the screen is
rebuilt with a terminal emulator (pyte): the lines show the stage, percent and figure while
the test runs, with and without xdist, and pytest's own lines are intact at the end. Into
a pipe nothing extra is printed. The tiny test waits on a gate (a Unix socket) that this
test opens only once the screen showed what it should, so nothing here sleeps."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pyte
import pytest

SUITE = '''
import os, socket
import pytest

pytestmark = [pytest.mark.stage, pytest.mark.cpu]


def gate(step):
    path = os.environ.get("LIVE_GATE")
    if path:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(300)
            s.connect(path)
            s.sendall(step.encode() + b"\\n")
            s.recv(1)


def test_burn(host):
    host.progress_interval_s = 0.0
    progress = host.progress(total_s=None, figure="figure-alpha")
    progress.update(42.0, "figure-alpha")
    gate("alpha")
    progress.update(77.0, "figure-beta")
    gate("beta")
'''

ROWS, COLUMNS = 40, 120


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_live.py").write_text(SUITE)
    return tmp_path


def _argv(project: Path, run_id: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "suite", "-p", "harness.pytest_plugin",
            "--inventory", "inv", "--reports-dir", str(project / "reports"),
            "--run-id", run_id, "-p", "no:cacheprovider", *extra]


def _env(**extra: str) -> dict[str, str]:
    """This environment without CI (CI runs these tests with CI=true, which turns the
    lines off: that is tested on its own)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "LIVE_GATE")}
    env.update(TERM="xterm", COLUMNS=str(COLUMNS), LINES=str(ROWS), **extra)
    return env


class Gate:
    """The Unix socket the tiny test waits on at each step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(1)
        self.server.settimeout(300)  # a busy CI machine starts pytest slowly

    def reached(self) -> tuple[socket.socket, str]:
        conn, _ = self.server.accept()
        conn.settimeout(60)
        return conn, conn.recv(64).decode().strip()

    def close(self) -> None:
        self.server.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    # A short path: Unix socket names are limited to 108 bytes.
    short = Path("/tmp") / f"vet-live-{os.getpid()}-{tmp_path.name[-20:]}.sock"
    opened = Gate(short)
    yield opened
    opened.close()


def screen_of(data: bytes) -> list[str]:
    """What a terminal shows after `data` (the pty's output: ONLCR already applied)."""
    screen = pyte.Screen(COLUMNS, ROWS)
    stream = pyte.ByteStream(screen)
    stream.feed(data)
    return [line.rstrip() for line in screen.display]


def line_with(screen: list[str], text: str) -> str:
    found = [line for line in screen if text in line]
    assert found, f"{text!r} not on the screen:\n" + "\n".join(screen)
    return found[0]


def _run_under_pty(project: Path, gate: Gate, run_id: str, *extra: str) -> list[list[str]]:
    """Run the tiny suite in a pty; the screens at each gate and at the end."""
    log = io.BytesIO()
    argv = _argv(project, run_id, *extra)
    child = pexpect.spawn(argv[0], argv[1:], cwd=str(project), env=_env(LIVE_GATE=str(gate.path)),
                          dimensions=(ROWS, COLUMNS), timeout=300)
    child.logfile_read = log
    screens = []
    try:
        for step, shown in (("alpha", "42% figure-alpha"), ("beta", "77% figure-beta")):
            conn, said = gate.reached()
            with conn:
                assert said == step
                child.expect_exact(shown)
                # The host line is drawn in one write: read up to its end before looking.
                child.expect_exact("\x1b[")
                screens.append(screen_of(log.getvalue()))
                conn.sendall(b"1")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, log.getvalue().decode(errors="replace")[-3000:]
    screens.append(screen_of(log.getvalue()))
    return screens


@pytest.mark.parametrize("mode", ["no-xdist", "xdist"])
def test_lines_follow_the_host_on_a_tty_and_leave_pytest_output_intact(
        project: Path, gate: Gate, mode: str) -> None:
    extra = ("-p", "no:xdist") if mode == "no-xdist" else ("-n", "1")
    alpha, beta, final = _run_under_pty(project, gate, f"live-{mode}", *extra)

    host = line_with(alpha, "localhost")
    assert "CPUStress" in host and "cpu 42% figure-alpha" in host
    assert "vet run live-" in line_with(alpha, "hosts done")
    assert "cpu 77% figure-beta" in line_with(beta, "localhost")
    # The lines sit below pytest's output, never inside it.
    header = alpha.index(line_with(alpha, "hosts done"))
    assert any(line.startswith("collected") or "worker" in line for line in alpha[:header])

    # At the end the lines are gone and pytest's own lines read as without them.
    assert not any("figure-" in line or "hosts done" in line for line in final)
    result = line_with(final, "[100%]")
    assert result.startswith(("suite/test_live.py .", ".")), result
    assert "1 passed" in line_with(final, "passed in")
    assert "localhost  passed" in line_with(final, "Completed")


def test_nothing_extra_into_a_pipe(project: Path) -> None:
    result = subprocess.run(_argv(project, "live-pipe", "-p", "no:xdist"), cwd=project,
                            env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "\x1b" not in result.stdout
    assert "figure-alpha" not in result.stdout and "hosts done" not in result.stdout
    assert "suite/test_live.py ." in result.stdout


def test_ci_under_a_tty_shows_nothing_extra(project: Path) -> None:
    argv = _argv(project, "live-ci-tty", "-p", "no:xdist")
    output, status = pexpect.run(argv[0] + " " + " ".join(argv[1:]), cwd=str(project),
                                 env=_env(CI="true"), timeout=300, withexitstatus=True,
                                 dimensions=(ROWS, COLUMNS))
    assert status == 0, output[-3000:]
    assert b"hosts done" not in output and b"figure-alpha" not in output
