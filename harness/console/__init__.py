"""Ways to run commands on a host: one Channel interface, several transports."""

from harness.console.channel import (
    Channel,
    ChannelError,
    CommandCancelled,
    CommandTimeout,
    OutputLine,
)
from harness.console.local import LocalChannel

__all__ = [
    "Channel",
    "ChannelError",
    "CommandCancelled",
    "CommandTimeout",
    "LocalChannel",
    "OutputLine",
]
