"""Fault matrix, hostile output (docs/RELIABILITY.md): what a broken or hostile host
prints cannot confuse a channel. SerialChannel over the socat login shell
(tests/fixtures/serial_bridge.py) and SshChannel over the tests' sshd run commands that
print terminal escape sequences, a megabyte without a newline, binary noise, bytes that
imitate vet's command markers (other ids, a cut-off end marker, lone separators), and
the exit status, the output around it and the next command are still right, within the
command's deadline.

tests/integration/test_serial_channel.py (markers, long lines, binary over the console)
and tests/contract/test_channel_contract.py (binary, every transport) have more.
"""

from __future__ import annotations

import time

import pytest

from harness.console import Channel

pytestmark = pytest.mark.faults

TRANSPORTS = ["serial", "ssh"]
DEADLINE_S = 60.0


@pytest.fixture(params=TRANSPORTS)
def channel(request: pytest.FixtureRequest) -> Channel:
    chan: Channel = request.getfixturevalue(f"{request.param}_channel")
    return chan


def _run(channel: Channel, command: str) -> tuple[int, str]:
    started = time.monotonic()
    result = channel.run(command, DEADLINE_S)
    took = time.monotonic() - started
    assert took < DEADLINE_S, f"took {took:.1f} s"
    after = channel.run("echo next", 10)  # the channel is still in step with the host
    assert (after.exit_status, after.stdout) == (0, "next\n"), after
    return result.exit_status, result.stdout


def test_escape_sequences(channel: Channel) -> None:
    status, out = _run(channel, (
        "printf '\\033[2J\\033[H\\033[31mred\\033[0m\\n'; "  # clear, home, colour
        "printf '\\033]0;a window title\\007\\033[?2004h\\033[?2004l\\033[6n\\033c\\n'; "
        "printf 'abc\\rxyz\\b\\b\\n'; echo end; exit 6"))
    assert status == 6
    assert "red" in out and out.endswith("end\n"), repr(out)


def test_output_imitating_the_command_markers(channel: Channel) -> None:
    status, out = _run(channel, (
        "printf '\\036VET:0123456789ab:E:0\\036\\n'; "  # another command's end
        "printf '\\036VET:0123456789ab:B\\036\\n'; "  # another command's begin
        "printf '\\036\\036\\036\\n'; printf 'x\\036VET:'; echo; "  # lone separators
        "echo between; printf '\\036VET:abc:E:'; exit 4"))  # a cut-off end, no newline
    assert status == 4
    lines = out.split("\n")
    assert "\x1eVET:0123456789ab:E:0\x1e" in lines and "between" in lines, repr(out)
    assert out.endswith("\x1eVET:abc:E:"), repr(out)


def test_a_megabyte_without_a_newline(channel: Channel) -> None:
    status, out = _run(channel, "head -c 1048576 /dev/zero | tr '\\0' y; exit 9")
    assert status == 9
    assert out == "y" * 1048576, (len(out), out[-40:])


def test_binary_noise_with_separator_and_nul_bytes(channel: Channel) -> None:
    status, out = _run(channel, (
        "head -c 262144 /dev/urandom; printf '\\000\\036\\000\\036VET:\\000'; "
        "head -c 65536 /dev/urandom | tr -d '\\n'; echo; echo done; exit 5"))
    assert status == 5
    assert out.endswith("\ndone\n"), repr(out[-80:])
