"""The Channel protocol every transport (local, SSH, serial) implements.

A stage calls `run(command, timeout)` and gets a CommandResult; while the command
runs, each output line is handed to `on_line` as it arrives, so logs and live
views see output long before the command ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from harness.errors import VetError
from harness.models import CommandResult


@dataclass(frozen=True)
class OutputLine:
    """One line of command output as it arrived (without its newline)."""

    stream: str  # "stdout" or "stderr"
    text: str
    command_id: str
    at: float = field(default_factory=time.time)


LineHandler = Callable[[OutputLine], None]


class ChannelError(VetError):
    """The transport failed: connection lost, host gone, command could not start."""


class CommandTimeout(ChannelError):
    """A command ran past its deadline; it has been stopped on the host."""


class CommandCancelled(ChannelError):
    """A command was cancelled (operator, pytest-timeout, run stopped); it was stopped."""


@runtime_checkable
class Channel(Protocol):
    """Runs shell commands on one host."""

    #: Where commands go: "local", "ssh", "serial"; recorded as the event source.
    transport: str
    #: False where stdout and stderr arrive as one stream (a serial console): then
    #: both are in CommandResult.stdout, in the order they were written.
    separates_stderr: bool

    def run(
        self,
        command: str,
        timeout: float,
        on_line: LineHandler | None = None,
        command_id: str | None = None,
    ) -> CommandResult:
        """Run `command` in a shell; raise CommandTimeout past `timeout` seconds."""
        ...

    def cancel(self) -> None:
        """Stop the command now running (from any thread); run() raises CommandCancelled."""
        ...

    def close(self) -> None:
        """Release the transport; further run() calls fail."""
        ...
