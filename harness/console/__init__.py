"""Ways to run commands on a host: one Channel interface, several transports.

local.py (the controller itself), ssh.py (paramiko, one persistent shell per host),
serial.py (pyserial + pexpect, everything logged); markers.py frames commands in a
shell's byte stream; boot.py and watch.py read a console for boot steps and deaths;
transfer.py moves files over any channel (base64) or a serial line (XMODEM).
"""

from harness.console.channel import (
    Channel,
    ChannelError,
    CommandCancelled,
    CommandTimeout,
    OutputLine,
)
from harness.console.local import LocalChannel
from harness.console.serial import SerialChannel
from harness.console.ssh import SshChannel

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
