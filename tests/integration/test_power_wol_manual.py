"""wol sends real magic packets (to a socket the test listens on); manual without a tty."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.models import Connection, Host, PowerConfig
from harness.power import PowerError, power_driver
from harness.power.wol import COPIES

ROOT = Path(__file__).resolve().parents[2]
MAC = "52:54:00:ab:01:02"


def test_wol_sends_magic_packets_to_the_listener() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(5)  # a blocking read with a deadline
        port = listener.getsockname()[1]
        host = Host(name="node11", connection=Connection(kind="local"),
                    power=PowerConfig(driver="wol", params={"mac": MAC.upper(),
                                                            "broadcast": "127.0.0.1",
                                                            "port": port}))
        power_driver(host).on()
        packets = [listener.recv(1024) for _ in range(COPIES)]
    expected = b"\xff" * 6 + bytes.fromhex(MAC.replace(":", "")) * 16
    assert packets == [expected] * COPIES
    assert len(expected) == 102


def test_wol_reports_an_unusable_source_interface() -> None:
    host = Host(name="node11", connection=Connection(kind="local"),
                power=PowerConfig(driver="wol", params={"mac": MAC, "broadcast": "127.0.0.1",
                                                        "port": 9,
                                                        "interface": "192.0.2.123"}))
    with pytest.raises(PowerError) as caught:
        power_driver(host).on()
    text = str(caught.value)
    assert "host node11: wol power on via magic packet for 52:54:00:ab:01:02 to " \
           "127.0.0.1:9/udp from 192.0.2.123 failed" in text


def test_manual_without_a_terminal_fails_at_once() -> None:
    """In a new session there is no controlling terminal: no one can answer, so no hang."""
    script = textwrap.dedent("""
        from harness.models import Connection, Host
        from harness.power import PowerError, power_driver
        try:
            power_driver(Host(name="node12", connection=Connection(kind="local"))).on()
        except PowerError as exc:
            print(exc)
            raise SystemExit(3)
    """)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, start_new_session=True,
                          stdin=subprocess.DEVNULL, check=False)
    assert time.monotonic() - started < 60
    assert done.returncode == 3, done.stderr
    assert "host node12: power the server ON now" in done.stdout
    assert "no terminal to ask an operator" in done.stdout
    assert "ipmi, redfish, qemu or wol" in done.stdout
