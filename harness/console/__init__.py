"""Ways to run commands on a host: one Channel interface, several transports.

local.py (the controller itself), ssh.py (paramiko, one persistent shell per host),
serial.py (pyserial + pexpect, everything logged); markers.py frames commands in a
shell's byte stream; boot.py and watch.py read a console for boot steps and deaths;
transfer.py moves files over any channel (base64) or a serial line (XMODEM).

The transports load on first use (PEP 562): importing any harness.console module
(boot.py, watch.py...) would otherwise import paramiko with cryptography, PyNaCl and
invoke (~19 MB of RSS) into every pytest process, the xdist controller included, which
never opens a channel.
"""

import importlib
from typing import TYPE_CHECKING

from harness.console.channel import (
    Channel,
    ChannelError,
    CommandCancelled,
    CommandTimeout,
    OutputLine,
)

if TYPE_CHECKING:
    from harness.console.local import LocalChannel
    from harness.console.serial import SerialChannel
    from harness.console.ssh import SshChannel

_TRANSPORTS = {"LocalChannel": "local", "SerialChannel": "serial", "SshChannel": "ssh"}

__all__ = [
    "Channel",
    "ChannelError",
    "CommandCancelled",
    "CommandTimeout",
    "LocalChannel",
    "OutputLine",
    "SerialChannel",
    "SshChannel",
]


def __getattr__(name: str) -> object:
    if name in _TRANSPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_TRANSPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
