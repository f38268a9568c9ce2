"""When SSH is gone, the hold key goes in (and out) over the serial console.

The host is tests/fixtures/serial_bridge's real login shell behind a socat TCP console
(its HOME is the test's folder, so authorized_keys is the test's file); its SSH port
is a closed port on 127.0.0.1, so every SSH attempt is refused at once.
"""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.console.serial import SerialChannel
from harness.console.ssh import SshChannel
from harness.hold import HoldError, open_hold, release_hold
from harness.models import Connection, ConsoleLogin, HoldPolicy, Host
from harness.states import State
from harness.store import Store
from tests.fixtures.serial_bridge import (
    HOST_NAME,
    PASSWORD,
    USER,
    SerialEndpoint,
    start_tcp_endpoint,
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _failed_host(store: Store, run_id: str) -> None:
    store.start_run(run_id, "quick", "inv")
    store.transition(run_id, HOST_NAME, State.QUEUED)
    store.transition(run_id, HOST_NAME, State.FAILED, "spec: memory")


def _hold(store: Store, run_id: str, host: Host, endpoint: SerialEndpoint, tmp_path: Path
          ) -> dict[str, Any]:
    dead = SshChannel(HOST_NAME, "127.0.0.1", port=host.connection.port or 22, user=USER,
                      key_filename=tmp_path / "none", connect_timeout=5)
    console = SerialChannel(HOST_NAME, endpoint.url, user=USER, password=PASSWORD,
                            console_log=tmp_path / f"{run_id}-console.log")
    console.open()
    try:
        return open_hold(store, run_id, host, stage="spec", reason="memory too small",
                         address="127.0.0.1", host_key=None, channel=dead, console=console,
                         key_dir=tmp_path / "holds")
    finally:
        dead.close()
        console.close()


@pytest.fixture
def console_host(serial_endpoint: SerialEndpoint) -> Host:
    return Host(HOST_NAME, Connection("ssh", address="127.0.0.1", port=_closed_port(),
                                      user=USER),
                console=serial_endpoint.url, console_login=ConsoleLogin(USER, PASSWORD),
                hold=HoldPolicy(ttl_h=1, power_off=False))


def test_key_installed_and_revoked_over_the_console(serial_endpoint: SerialEndpoint,
                                                    console_host: Host, tmp_path: Path) -> None:
    host = console_host
    authorized = serial_endpoint.workdir / ".ssh" / "authorized_keys"
    with Store(tmp_path / "vet.sqlite") as store:
        _failed_host(store, "r1")
        hold = _hold(store, "r1", host, serial_endpoint, tmp_path)
        assert hold["key_via"] == "console" and hold["note"] == ""
        public = str(hold["public_key"])
        assert public in authorized.read_text().splitlines()
        assert authorized.stat().st_mode & 0o777 == 0o600
        command = str(hold["ssh_command"])
        assert "StrictHostKeyChecking=accept-new" in command  # no announced host key here
        assert f"-p {host.connection.port} {USER}@127.0.0.1" in command
        assert store.host_state("r1", HOST_NAME) is State.HOLDING

        # socat serves one connection, as a BMC's SOL often does: the release gets a fresh
        # console on the same host (same shell HOME), as after a controller restart.
        serial_endpoint.stop()
        again = start_tcp_endpoint(serial_endpoint.workdir)
        try:
            what = release_hold(store, hold, replace(host, console=again.url), by="tester")
        finally:
            again.stop()
        assert "key revoked over the serial console" in what and "left on" in what
        assert public.split()[1] not in authorized.read_text()
        assert not Path(str(hold["key_path"])).exists()
        assert store.open_holds() == []
        assert store.host_state("r1", HOST_NAME) is State.RELEASED
        [row] = store.query("SELECT released_by, release_note FROM holds")
        assert row["released_by"] == "tester" and row["release_note"] == what


def test_a_key_that_cannot_be_revoked_keeps_a_left_on_host_held(
        serial_endpoint: SerialEndpoint, console_host: Host, tmp_path: Path) -> None:
    host = console_host
    with Store(tmp_path / "vet.sqlite") as store:
        _failed_host(store, "r2")
        hold = _hold(store, "r2", host, serial_endpoint, tmp_path)
        serial_endpoint.stop()  # neither SSH nor the console answers now
        with pytest.raises(HoldError) as refused:
            release_hold(store, hold, host, by="tester")
        text = str(refused.value)
        assert "could not be revoked" in text and f"vet release {HOST_NAME} --power-off" in text
        assert [h["id"] for h in store.open_holds()] == [hold["id"]]
        assert Path(str(hold["key_path"])).exists()


def test_opening_a_hold_tells_the_operator(serial_endpoint: SerialEndpoint,
                                           console_host: Host, tmp_path: Path) -> None:
    """HoldingOpened reaches the run's notification targets with the way in."""
    from harness.notify import Notifier
    from tests.integration.test_notify import FakeNtfy, routes

    ntfy = FakeNtfy()
    notifier = Notifier(routes(ntfy.url()), "r3").activate()
    try:
        with Store(tmp_path / "vet.sqlite") as store:
            _failed_host(store, "r3")
            hold = _hold(store, "r3", console_host, serial_endpoint, tmp_path)
        post = ntfy.next()
        assert notifier.drain()
        assert notifier.counts()["HoldingOpened"] == {"sent": 1, "failed": 0}
    finally:
        notifier.deactivate()
        ntfy.close()
    assert post["json"]["title"] == f"vet: {HOST_NAME} held for you (failed spec)"
    message = post["json"]["message"]
    assert "memory too small" in message and str(hold["ssh_command"]) in message
    assert "run r3" in message
