"""A host vetted over SSH while its serial console is watched: a kernel panic printed
on the console fails the running stage within 1 s, stops the remote command, skips
the later stages and leaves the console lines as evidence.

Real parts: an OpenSSH server and a shell behind socat (tests/fixtures), and an inner
pytest run of the vet plugin.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.event_format import per_line
from tests.fixtures.serial_bridge import KernelNoise, SerialEndpoint
from tests.fixtures.sshd import SshdInfo
from tests.helpers import gone

STAGES = """\
import pytest

pytestmark = pytest.mark.stage


@pytest.mark.cpu
def test_long_stress(host):
    host.run("sh -c 'echo $$ > {fifo}; exec sleep 61.5'", timeout=120)


@pytest.mark.storage
def test_after(host):
    host.run("true")
"""


def _read_with_deadline(fd: int, deadline: float) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"nothing from the stage command; read {data!r}"
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 100)
            assert chunk, "the stage command closed the FIFO without writing"
            data += chunk
    return data


def test_console_panic_fails_the_running_stage_within_a_second(
    tmp_path: Path, sshd: SshdInfo, serial_endpoint: SerialEndpoint
) -> None:
    fifo = tmp_path / "started.fifo"
    os.mkfifo(fifo)
    (tmp_path / "test_stages.py").write_text(STAGES.format(fifo=fifo))
    (tmp_path / "hosts.yml").write_text(json.dumps({"all": {"hosts": {"node01": {
        "ansible_host": sshd.address, "ansible_port": sshd.port, "ansible_user": "root",
        "ansible_ssh_private_key_file": str(sshd.client_key),
        "vet_ssh_host_key": sshd.host_key_fingerprint,
        "vet_macs": ["52:54:00:00:00:01"],
        "vet_console": serial_endpoint.url,
    }}}}))
    inner = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "harness.pytest_plugin", "--inventory",
         "hosts.yml", "--run-id", "panic1", "-p", "no:cacheprovider", "-rs", "-q"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            pid = int(_read_with_deadline(fd, time.monotonic() + 60))
        finally:
            os.close(fd)
        noise = KernelNoise(serial_endpoint.tty_path)
        injected_at = time.time()
        noise.line("Kernel panic - not syncing: Fatal exception in interrupt")
        noise.stop()
        out, _ = inner.communicate(timeout=60)
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait()

    assert inner.returncode == 1, out
    assert "ConsoleDeath: host node01:" in out and "panic" in out
    assert "host node01 failed stage cpu" in out  # storage skipped with the reason
    assert gone(pid, 5), "the remote sleep outlived its cancelled stage"

    host_dir = tmp_path / "reports" / "runs" / "panic1" / "node01"
    events = [json.loads(line) for line in (host_dir / "events.jsonl").read_text().splitlines()]
    error = next(e for e in events if e["kind"] == "command-error" and e["source"] == "ssh")
    # A batch: one event per console read, stamped when the harness read it. The bound is
    # on the harness: from reading the panic to failing the stage. The test's own serial
    # relay (a pty behind socat) comes before that and is only bounded loosely, since on a
    # loaded machine it alone has taken tens of milliseconds past the second.
    read_at = next(e["at"] for e in events if e["source"] == "console"
                   and any("Kernel panic" in line.get("text", "") for line in per_line(e)))
    assert error["at"] - read_at < 1.0, f"stage failed {error['at'] - read_at:.2f} s late"
    assert read_at - injected_at < 5.0, f"the relay took {read_at - injected_at:.2f} s"
    assert "Kernel panic - not syncing" in (host_dir / "console.log").read_text()

    results = tmp_path / "reports" / "runs" / "panic1" / "allure-results"
    cpu = next(json.loads(p.read_text()) for p in results.glob("*-result.json")
               if json.loads(p.read_text())["name"].startswith("test_long_stress"))
    assert cpu["status"] == "failed"
    slices = [a for a in cpu["attachments"] if a["name"] == "console (this test)"]
    assert slices, cpu["attachments"]
    assert "Kernel panic" in (results / slices[0]["source"]).read_text()


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the test sshd runs as root")
