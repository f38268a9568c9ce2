"""The console lock: who holds a console, and what a dead holder leaves (nothing)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from harness.console.lock import ConsoleLock, holder, lock_path, runtime_dir
from harness.console.serial import SerialChannel

URL = "socket://127.0.0.1:7001"


@pytest.fixture(autouse=True)
def private_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VET_RUNTIME_DIR", str(tmp_path / "rt"))
    return tmp_path / "rt"


def test_one_holder_at_a_time_and_what_it_says(private_runtime: Path) -> None:
    assert holder(URL) is None
    lock = ConsoleLock.take(URL, {"host": "node01", "socket": "/x.sock"})
    assert lock is not None
    assert ConsoleLock.take(URL, {"host": "other"}) is None  # flock: per open file
    info = holder(URL)
    assert info == {"url": URL, "pid": os.getpid(), "host": "node01", "socket": "/x.sock"}
    assert ConsoleLock.take("socket://127.0.0.1:7002", {}) is not None  # another console
    lock.release()
    assert holder(URL) is None and not lock_path(URL).exists()
    assert (runtime_dir() / "consoles").stat().st_mode & 0o777 == 0o700


def test_a_dead_holders_files_count_as_free_and_are_swept(private_runtime: Path) -> None:
    lock = ConsoleLock.take(URL, {"socket": "s"})
    assert lock is not None and lock._fd is not None
    sock = lock_path(URL).with_suffix(".sock")
    sock.write_text("")
    os.close(lock._fd)  # what the kernel does when the holder dies: the flock goes
    assert holder(URL) is None
    assert lock_path(URL).exists()
    other = ConsoleLock.take("socket://127.0.0.1:7003", {})
    assert other is not None
    assert not lock_path(URL).exists() and not sock.exists()
    other.release()
    assert list((private_runtime / "consoles").iterdir()) == []


def test_an_unusable_runtime_dir_never_stops_a_console_from_opening(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("VET_RUNTIME_DIR", str(not_a_dir))
    with socket.create_server(("127.0.0.1", 0)) as server:
        channel = SerialChannel("node01", f"socket://127.0.0.1:{server.getsockname()[1]}")
        channel.open()
        try:
            assert "cannot lock console" in caplog.text  # said, and the console is open
            channel.write(b"x")
        finally:
            channel.close()
