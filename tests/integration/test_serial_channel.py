"""SerialChannel against a real bash behind real console endpoints (socat TCP, a pty
device, an RFC 2217 server), with kernel-style messages written into its terminal."""

from __future__ import annotations

import os
import re
import shlex
import socket
import threading
import time
from pathlib import Path

import pytest

from harness.console import ChannelError, CommandCancelled, CommandTimeout, OutputLine
from harness.console.serial import SerialChannel, open_serial
from harness.console.transfer import get_file, get_file_xmodem, send_file, send_file_xmodem
from harness.console.watch import ConsoleWatch
from tests.fixtures.serial_bridge import (
    NOISE_LINE,
    PASSWORD,
    USER,
    KernelNoise,
    Rfc2217Server,
    SerialEndpoint,
    logged_in,
)
from tests.helpers import gone

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z [|~!] ", re.MULTILINE)




def _log(tmp_path: Path) -> str:
    return (tmp_path / "console.log").read_text(encoding="utf-8", errors="replace")


def _entries(log: str) -> list[str]:
    """The log's entries: LF-separated (str.splitlines would also split at U+2028)."""
    return log.removesuffix("\n").split("\n")


# -- login and commands ----------------------------------------------------------------


def test_login_sets_up_the_shell_and_keeps_the_password_out_of_the_log(
    serial_channel: SerialChannel, tmp_path: Path
) -> None:
    result = serial_channel.run('echo "$TERM [$PS2]"; [[ $- == *m* ]] && echo jobs', 10)
    assert result.stdout == "dumb []\njobs\n"
    log = _log(tmp_path)
    assert "vet-host login: vet" in log and "Password:" in log
    assert PASSWORD not in log
    assert all(LOG_LINE.match(line) for line in _entries(log))


def test_wrong_password_is_refused(serial_endpoint: SerialEndpoint, tmp_path: Path) -> None:
    channel = SerialChannel("contract-host", serial_endpoint.url, user=USER, password="wrong")
    channel.open()
    try:
        with pytest.raises(ChannelError, match=r"login as 'vet' .* was refused"):
            channel.login(timeout=10)
    finally:
        channel.close()


def test_exit_statuses_quoting_and_session_safety(serial_channel: SerialChannel) -> None:
    assert [serial_channel.run(f"exit {n}", 10).exit_status for n in (0, 1, 42, 255)] == [
        0, 1, 42, 255]
    tricky = "it's \"quoted\" $HOME \\ `tick` !bang ;|&<>(){}*?[]~#%^ end"
    assert serial_channel.run(f"printf '%s\\n' {shlex.quote(tricky)}", 10).stdout == tricky + "\n"
    # not plain ASCII: travels base64-encoded
    assert serial_channel.run("echo héllo\necho 'two\tcols'", 10).stdout == "héllo\ntwo\tcols\n"
    serial_channel.run("cd /; exit 0", 10)
    assert serial_channel.run("cat; pwd", 10).stdout.strip() != "/"


def test_command_too_long_for_a_console_line_is_refused(serial_channel: SerialChannel) -> None:
    with pytest.raises(ChannelError, match="too long"):
        serial_channel.run("echo " + "x" * 5000, 10)
    assert serial_channel.run("echo fine", 10).stdout == "fine\n"


def test_output_imitating_markers_is_output(serial_channel: SerialChannel) -> None:
    result = serial_channel.run(
        "printf '\\036VET:deadbeef0000:E:0\\036\\n'; printf '\\036VET:abc:E:x\\036 x\\n';"
        " printf '\\036VET:'; echo; echo after; exit 3", 10)
    assert result.exit_status == 3
    assert result.stdout == "\x1eVET:deadbeef0000:E:0\x1e\n\x1eVET:abc:E:x\x1e x\n\x1eVET:\nafter\n"


def test_a_very_long_line(serial_channel: SerialChannel, tmp_path: Path) -> None:
    result = serial_channel.run("head -c 300000 /dev/zero | tr '\\0' x; echo; echo end", 30)
    assert result.stdout == "x" * 300000 + "\nend\n"
    log = _log(tmp_path)
    assert log.count("x") >= 300000
    assert len(re.findall(r"^\S+Z ~ x+$", log, re.MULTILINE)) >= 3  # logged in pieces


def test_binary_output(serial_channel: SerialChannel, tmp_path: Path) -> None:
    result = serial_channel.run("head -c 65536 /dev/urandom; echo; echo done", 30)
    assert result.ok and result.stdout.endswith("\ndone\n")
    assert serial_channel.run("echo ok", 10).stdout == "ok\n"
    assert all(LOG_LINE.match(line) for line in _entries(_log(tmp_path)))


# -- kernel messages -------------------------------------------------------------------


def test_kernel_noise_between_commands_and_inside_output(
    noisy_serial_channel: SerialChannel, kernel_noise: KernelNoise
) -> None:
    for n in range(20):
        result = noisy_serial_channel.run(f"echo cmd {n}; exit {n}", 10)
        assert result.exit_status == n
        assert [ln for ln in result.stdout.splitlines() if not NOISE_LINE.fullmatch(ln)] == [
            f"cmd {n}"]
    result = noisy_serial_channel.run(
        "for i in $(seq 1 100); do echo line $i; sleep 0.002; done; exit 7", 30)
    assert result.exit_status == 7
    lines = result.stdout.splitlines()
    assert [ln for ln in lines if not NOISE_LINE.fullmatch(ln)] == [
        f"line {i}" for i in range(1, 101)]
    assert any(NOISE_LINE.fullmatch(ln) for ln in lines)  # noise did land inside


def test_kernel_message_in_the_middle_of_a_line(
    serial_channel: SerialChannel, kernel_noise: KernelNoise, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    written: list[str] = []

    def inject() -> None:
        # Opening the FIFO returns once the shell opened it to read, i.e. after it
        # printed "abc": the message lands after "abc", before the rest of the line.
        with fifo.open("w") as gate:
            written.append(kernel_noise.line("EXT4-fs (sda1): mounted filesystem"))
            gate.write("go\n")

    def on_line(line: OutputLine) -> None:
        if line.text == "first":
            threading.Thread(target=inject).start()

    result = serial_channel.run(f"echo first; printf abc; read x < {fifo}; echo def; exit 5",
                                20, on_line=on_line)
    assert result.exit_status == 5
    assert result.stdout == f"first\nabc{written[0]}\ndef\n"


# -- cancel, timeout, disconnect -------------------------------------------------------


def test_cancel_stops_foreground_and_background_processes(
    serial_channel: SerialChannel, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"

    def on_line(line: OutputLine) -> None:
        if line.text == "running":
            threading.Thread(target=serial_channel.cancel).start()

    with pytest.raises(CommandCancelled, match="contract-host"):
        serial_channel.run(f"sleep 301 & echo $! > {pids}; echo $BASHPID >> {pids};"
                           " echo running; sleep 302", 60, on_line=on_line)
    assert all(gone(int(pid)) for pid in pids.read_text().split())
    assert serial_channel.run("echo again", 10).stdout == "again\n"


def test_a_command_ignoring_ctrl_c_is_stopped_with_ctrl_backslash(
    serial_channel: SerialChannel, tmp_path: Path
) -> None:
    serial_channel.interrupt_grace = 0.5
    pidfile = tmp_path / "pid"
    with pytest.raises(CommandTimeout, match="stopped it"):
        serial_channel.run(f"trap '' INT; echo $BASHPID > {pidfile}; exec sleep 303", 1.0)
    assert gone(int(pidfile.read_text()))
    assert serial_channel.run("echo usable", 10).stdout == "usable\n"


def test_timeout_leaves_the_shell_usable(serial_channel: SerialChannel) -> None:
    with pytest.raises(CommandTimeout, match=r"contract-host.*'echo almost; sleep 304'.*almost"):
        serial_channel.run("echo almost; sleep 304", 0.5)
    assert serial_channel.run("echo next", 10).stdout == "next\n"


def test_peer_disconnecting_mid_command(
    serial_endpoint: SerialEndpoint, serial_channel: SerialChannel, tmp_path: Path
) -> None:
    def on_line(line: OutputLine) -> None:
        if line.text == "started":
            serial_endpoint.process.kill()

    with pytest.raises(ChannelError, match=r"contract-host.*disconnected while running "
                                           r"'echo started; sleep 305'.*console\.log"):
        serial_channel.run("echo started; sleep 305", 30, on_line=on_line)
    log = _log(tmp_path)
    assert re.search(r"\| started$", log, re.MULTILINE)
    assert "! vet: console disconnected" in log
    with pytest.raises(ChannelError, match="disconnected"):
        serial_channel.run("true", 5)


# -- the console log and subscribers ---------------------------------------------------


def test_console_output_is_logged_while_no_command_runs(
    serial_channel: SerialChannel, kernel_noise: KernelNoise, tmp_path: Path
) -> None:
    seen: list[tuple[str, float]] = []
    arrived = threading.Event()

    def watch(line: str, at: float) -> None:
        seen.append((line, at))
        if "crng init done" in line:
            arrived.set()

    unsubscribe = serial_channel.subscribe(watch)
    before = time.time()
    line = kernel_noise.line("random: crng init done")
    assert arrived.wait(5), seen
    # (it may follow the shell's prompt on the same line, as on a real console)
    assert seen[-1][0].endswith(line) and before <= seen[-1][1] <= time.time()
    assert re.search(r"^\S+Z \| .*" + re.escape(line) + "$", _log(tmp_path), re.MULTILINE)
    unsubscribe()
    kernel_noise.line("after unsubscribe")
    serial_channel.run("true", 10)  # the message has been read by now
    assert not any("after unsubscribe" in text for text, _ in seen)
    assert "after unsubscribe" in _log(tmp_path)


def test_an_unfinished_line_is_logged_and_delivered_after_a_pause(
    serial_channel: SerialChannel, kernel_noise: KernelNoise, tmp_path: Path
) -> None:
    arrived = threading.Event()
    # (the shell's prompt, also unfinished, may come before or after it)
    serial_channel.subscribe(
        lambda line, at: arrived.set() if "(none) login: " in line else None)
    os.write(kernel_noise.fd, b"(none) login: ")
    assert arrived.wait(5)
    assert re.search(r"^\S+Z ~ .*\(none\) login: ", _log(tmp_path), re.MULTILINE)


def test_console_watch_sees_a_panic_line(
    serial_channel: SerialChannel, kernel_noise: KernelNoise
) -> None:
    watch = ConsoleWatch(host="contract-host")
    serial_channel.subscribe_lines(watch.feed_lines)
    kernel_noise.line("Kernel panic - not syncing: Fatal exception in interrupt")
    finding = watch.wait_for_death(5)
    assert finding is not None and finding.kind == "panic"


def test_a_failing_subscriber_does_not_stop_the_console(serial_channel: SerialChannel) -> None:
    def broken(line: str, at: float) -> None:
        raise RuntimeError("subscriber bug")

    serial_channel.subscribe(broken)
    assert serial_channel.run("echo fine", 10).stdout == "fine\n"
    assert serial_channel.run("echo still", 10).stdout == "still\n"


def test_open_keeps_what_a_chatty_console_already_prints(tmp_path: Path) -> None:
    """pyserial's socket:// open() would spin discarding input while data keeps coming."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def chatter() -> None:
        conn, _ = server.accept()
        with conn:
            n = 0
            while not stop.is_set():
                try:
                    conn.sendall(f"[    0.{n:06d}] early boot line {n}\n".encode() * 1)
                except OSError:
                    return
                n += 1

    threading.Thread(target=chatter, daemon=True).start()
    channel = SerialChannel("chatty", f"socket://127.0.0.1:{server.getsockname()[1]}",
                            console_log=tmp_path / "console.log")
    got = threading.Event()
    channel.subscribe(lambda line, at: got.set() if line.endswith("line 5000") else None)
    opener = threading.Thread(target=channel.open)
    opener.start()
    opener.join(10)
    try:
        assert not opener.is_alive(), "open() did not return while the console chattered"
        assert got.wait(10)
        assert "early boot line 0\n" in _log(tmp_path)
    finally:
        stop.set()
        channel.close()
        server.close()


# -- files over the console ------------------------------------------------------------


def _payload(size: int) -> bytes:
    return bytes(range(256)) * 8 + os.urandom(size)


def test_base64_transfer_both_directions(serial_channel: SerialChannel, tmp_path: Path) -> None:
    data = _payload(100_000)
    target = tmp_path / "sent.bin"
    send_file(serial_channel, data, str(target))
    assert target.read_bytes() == data
    assert not Path(str(target) + ".vet-b64").exists()
    assert get_file(serial_channel, str(target)) == data
    send_file(serial_channel, b"", str(tmp_path / "empty"))
    assert get_file(serial_channel, str(tmp_path / "empty")) == b""


def test_base64_transfer_with_kernel_noise(noisy_serial_channel: SerialChannel,
                                           tmp_path: Path) -> None:
    data = _payload(200_000)
    send_file(noisy_serial_channel, data, str(tmp_path / "noisy.bin"))
    assert get_file(noisy_serial_channel, str(tmp_path / "noisy.bin")) == data


def test_reading_a_missing_file_fails_clearly(serial_channel: SerialChannel,
                                              tmp_path: Path) -> None:
    with pytest.raises(ChannelError, match=r"missing\.bin.*No such file"):
        get_file(serial_channel, str(tmp_path / "missing.bin"))


def test_xmodem_transfer_both_directions(serial_channel: SerialChannel, tmp_path: Path) -> None:
    data = _payload(50_000)
    target = tmp_path / "xmodem.bin"
    send_file_xmodem(serial_channel, data, str(target))
    assert target.read_bytes() == data
    assert get_file_xmodem(serial_channel, str(target)) == data
    assert serial_channel.run("echo after", 10).stdout == "after\n"


def test_xmodem_without_lrzsz_on_the_host_fails_clearly(
    serial_channel: SerialChannel, tmp_path: Path
) -> None:
    serial_channel.write(b"rx() { return 127; }\n")  # in the login shell, not run()'s subshell
    serial_channel.sync(10)
    with pytest.raises(ChannelError, match=r"rx is not installed on the host \(Debian package"):
        send_file_xmodem(serial_channel, b"data", str(tmp_path / "x.bin"))
    assert serial_channel.run("echo usable", 10).stdout == "usable\n"


# -- other console URL forms -----------------------------------------------------------


@pytest.mark.parametrize("form", ["{path}", "serial://{path}?baud=115200"])
def test_a_device_path_console(pty_serial_endpoint: SerialEndpoint, tmp_path: Path,
                               form: str) -> None:
    channel = logged_in(form.format(path=pty_serial_endpoint.url), tmp_path)
    try:
        result = channel.run("echo over a tty; exit 4", 10)
        assert (result.exit_status, result.stdout) == (4, "over a tty\n")
    finally:
        channel.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyserial's rfc2217 thread setup
def test_an_rfc2217_console(pty_serial_endpoint: SerialEndpoint, tmp_path: Path) -> None:
    server = Rfc2217Server(pty_serial_endpoint.url)
    try:
        channel = logged_in(server.url, tmp_path)
        try:
            result = channel.run("echo over rfc2217; exit 6", 10)
            assert (result.exit_status, result.stdout) == (6, "over rfc2217\n")
            data = _payload(20_000)
            send_file(channel, data, str(tmp_path / "r.bin"))
            assert get_file(channel, str(tmp_path / "r.bin")) == data
        finally:
            channel.close()
    finally:
        server.close()


def test_bad_urls_are_named() -> None:
    with pytest.raises(ValueError, match="names no device"):
        open_serial("serial://?baud=9600")
    channel = SerialChannel("badhost", "socket://127.0.0.1:1")
    with pytest.raises(ChannelError, match=r"badhost.*cannot open serial console socket://"):
        channel.open()
    with pytest.raises(ChannelError, match="open"):
        channel.run("true", 1)
    channel.close()
