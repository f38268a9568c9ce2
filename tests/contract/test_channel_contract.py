"""The contract every Channel must keep, whatever carries it.

Each transport provides a `<name>_channel` fixture (tests/contract/conftest.py and the
fixture plugins listed in tests/conftest.py) naming its host "contract-host", and is
listed in TRANSPORTS.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness.console import Channel, ChannelError, CommandCancelled, CommandTimeout, OutputLine
from tests.helpers import gone

TRANSPORTS = ["local", "serial", "ssh"]


@pytest.fixture(params=TRANSPORTS)
def channel(request: pytest.FixtureRequest) -> Channel:
    chan: Channel = request.getfixturevalue(f"{request.param}_channel")
    return chan


def test_exit_status_and_output(channel: Channel) -> None:
    result = channel.run("echo out; echo err >&2; exit 3", timeout=10)
    assert result.exit_status == 3
    if channel.separates_stderr:
        assert result.stdout == "out\n"
        assert result.stderr == "err\n"
    else:  # one terminal stream (serial console): both, in order, in stdout
        assert result.stdout == "out\nerr\n"
        assert result.stderr == ""
    assert not result.ok


def test_lines_are_streamed_while_the_command_runs(channel: Channel, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    seen: list[OutputLine] = []
    first_line = threading.Event()

    def on_line(line: OutputLine) -> None:
        seen.append(line)
        if line.text == "first":
            first_line.set()
            gate.write_text("go")

    # The command waits for the gate file, which only the line handler creates: the
    # command can finish only if "first" was delivered before the command ended.
    result = channel.run(
        f"echo first; while [ ! -e {gate} ]; do sleep 0.01; done; echo second",
        timeout=20, on_line=on_line, command_id="cmd-1",
    )
    assert result.ok
    assert first_line.is_set()
    assert [line.text for line in seen] == ["first", "second"]
    assert {line.command_id for line in seen} == {"cmd-1"}


def test_unfinished_last_line_is_delivered(channel: Channel) -> None:
    seen: list[str] = []
    result = channel.run("printf 'a\\nb'", timeout=10, on_line=lambda line: seen.append(line.text))
    assert seen == ["a", "b"]
    assert result.stdout == "a\nb"


def test_binary_output_does_not_break_the_channel(channel: Channel) -> None:
    result = channel.run("head -c 4096 /dev/urandom; echo; echo done", timeout=10)
    assert result.ok and result.stdout.endswith("done\n")




def test_timeout_stops_the_command_and_its_children(channel: Channel, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as err:
        channel.run(f"sleep 300 & echo $! > {pidfile}; echo waiting; wait", timeout=1.0)
    assert time.monotonic() - started < 10
    assert "contract-host" in str(err.value) and "sleep 300" in str(err.value)
    assert "waiting" in str(err.value)  # the last output is named
    assert gone(int(pidfile.read_text()))


def test_cancel_from_another_thread_stops_the_command(channel: Channel, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    def on_line(line: OutputLine) -> None:
        if line.text == "running":
            threading.Thread(target=channel.cancel).start()

    with pytest.raises(CommandCancelled):
        channel.run(f"sleep 300 & echo $! > {pidfile}; echo running; wait", timeout=60,
                    on_line=on_line)
    assert gone(int(pidfile.read_text()))
    # the channel is still usable after a cancel
    assert channel.run("echo again", timeout=10).stdout == "again\n"


def test_closed_channel_refuses_to_run(channel: Channel) -> None:
    channel.close()
    with pytest.raises(ChannelError, match="closed"):
        channel.run("true", timeout=5)
