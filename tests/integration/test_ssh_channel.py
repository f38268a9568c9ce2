"""SshChannel against a real OpenSSH server on 127.0.0.1 (tests/fixtures/sshd.py).

sshd runs on this machine, so a "remote" pid is a local pid: the tests check that
commands really stopped with a pidfd (readable at exit), never by polling. Nothing
sleeps to wait: gates are files written from the line handler, events, and reads
with deadlines.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from harness.console import ChannelError, CommandCancelled, CommandTimeout, OutputLine
from harness.console.ssh import SshChannel
from tests.fixtures.sshd import Sshd, SshdInfo, keygen
from tests.helpers import gone

DEAD_AFTER = 5.0
MARGIN = 1.5  # scheduling slack on a loaded machine




@pytest.fixture
def chan(sshd_server: Sshd) -> Iterator[SshChannel]:
    channel = sshd_server.channel("node07")
    channel.connect()
    yield channel
    channel.close()


# -- commands --------------------------------------------------------------------------


def test_lines_of_both_streams_arrive_while_the_command_runs(
    chan: SshChannel, tmp_path: Path
) -> None:
    # Each step of the command waits for a gate file that only the line handler
    # writes: the command can only finish if every line was delivered as it came.
    seen: list[tuple[str, str]] = []

    def on_line(line: OutputLine) -> None:
        seen.append((line.stream, line.text))
        (tmp_path / line.text).write_text("go")

    wait = "while [ ! -e {} ]; do sleep 0.01; done"
    result = chan.run(
        f"echo out-1; {wait.format(tmp_path / 'out-1')}; "
        f"echo err-1 >&2; {wait.format(tmp_path / 'err-1')}; echo out-2",
        timeout=20, on_line=on_line,
    )
    assert result.ok
    assert seen == [("stdout", "out-1"), ("stderr", "err-1"), ("stdout", "out-2")]


@pytest.mark.parametrize("status", [0, 1, 3, 127, 255])
def test_exit_status_is_the_commands(chan: SshChannel, status: int) -> None:
    assert chan.run(f"exit {status}", timeout=10).exit_status == status


def test_a_command_killed_by_a_signal_reports_128_plus_it(chan: SshChannel) -> None:
    assert chan.run("sh -c 'kill -9 $$'", timeout=10).exit_status == 128 + 9


def test_stdout_and_stderr_stay_apart(chan: SshChannel) -> None:
    result = chan.run(
        "for i in $(seq 1 200); do echo out$i; echo err$i >&2; done", timeout=20
    )
    assert result.stdout == "".join(f"out{i}\n" for i in range(1, 201))
    assert result.stderr == "".join(f"err{i}\n" for i in range(1, 201))


def test_any_command_text_arrives_intact(chan: SshChannel) -> None:
    # No tty in between: quotes, control bytes, non-ASCII and lines far over a tty's
    # 4 KiB limit reach bash as they are.
    text = "it's \"quoted\" $HOME `x` \\ \t\x01 ünï €\n" + "x" * 20000
    result = chan.run(f"cat <<'EOF'\n{text}\nEOF", timeout=20)
    assert result.stdout == text + "\n"


def test_commands_do_not_leak_state_into_each_other(chan: SshChannel) -> None:
    assert chan.run("cd /tmp && export VET_X=1 && exit 0", timeout=10).ok
    where, value = chan.run('echo "$PWD ${VET_X:-unset}"', timeout=10).stdout.split()
    assert where != "/tmp" and value == "unset"


def test_a_command_that_reads_stdin_gets_eof(chan: SshChannel) -> None:
    assert chan.run("cat; echo after", timeout=10).stdout == "after\n"


def test_short_commands_take_milliseconds_not_a_session_each(chan: SshChannel) -> None:
    # exec_command pays sshd's session setup (~130 ms) per command; the persistent
    # shell does not. The bound is loose for loaded machines; the benchmark measures.
    times = []
    for _ in range(30):
        started = time.perf_counter()
        chan.run("true", timeout=10)
        times.append(time.perf_counter() - started)
    assert statistics.median(times) < 0.05


# -- stopping --------------------------------------------------------------------------


def test_cancel_kills_what_ignores_signals_and_what_runs_in_the_background(
    chan: SshChannel, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"

    def on_line(line: OutputLine) -> None:
        if line.text == "running":
            threading.Thread(target=chan.cancel).start()

    started = time.monotonic()
    with pytest.raises(CommandCancelled, match="node07") as err:
        chan.run(
            f"trap '' INT TERM HUP; sleep 301 & echo $! > {pids}; "
            f"(trap '' TERM; sleep 302) & echo $! >> {pids}; echo running; wait",
            timeout=60, on_line=on_line,
        )
    assert "stopped it" in str(err.value)
    assert time.monotonic() - started < DEAD_AFTER
    assert all(gone(int(pid)) for pid in pids.read_text().split())
    assert chan.run("echo again", timeout=10).stdout == "again\n"


def test_keyboard_interrupt_in_the_running_thread_stops_the_command(
    chan: SshChannel, tmp_path: Path
) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT reaches only the main thread")
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is handled by something else here")
    pidfile = tmp_path / "pid"
    main = threading.main_thread().ident
    assert main is not None

    def on_line(line: OutputLine) -> None:
        if line.text == "running":  # Ctrl-C, as the terminal delivers it
            threading.Thread(target=signal.pthread_kill, args=(main, signal.SIGINT)).start()

    with pytest.raises(KeyboardInterrupt):
        chan.run(f"sleep 303 & echo $! > {pidfile}; echo running; wait", timeout=60,
                 on_line=on_line)
    assert gone(int(pidfile.read_text()))
    assert chan.run("echo again", timeout=10).stdout == "again\n"


def test_an_exception_from_the_line_handler_stops_the_command(
    chan: SshChannel, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"

    def on_line(line: OutputLine) -> None:
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        chan.run(f"sleep 304 & echo $! > {pidfile}; echo running; wait", timeout=60,
                 on_line=on_line)
    assert gone(int(pidfile.read_text()))


def test_after_a_timeout_the_channel_runs_the_next_command(chan: SshChannel) -> None:
    with pytest.raises(CommandTimeout, match="node07"):
        chan.run("echo waiting; sleep 308", timeout=0.5)
    assert chan.run("echo again", timeout=10).stdout == "again\n"


def test_a_command_that_kills_the_shell_is_reported_and_the_next_gets_a_new_one(
    chan: SshChannel,
) -> None:
    with pytest.raises(ChannelError, match=r"node07.*shell session on the host ended.*kill"):
        chan.run("kill -9 $$", timeout=10)  # $$ is the persistent shell
    assert chan.run("echo again", timeout=10).stdout == "again\n"


def test_close_ends_what_commands_left_running_and_every_thread(
    sshd_server: Sshd, tmp_path: Path
) -> None:
    before = set(threading.enumerate())
    channel = sshd_server.channel("node07")
    shell_pid = int(channel.run("echo $$", timeout=10).stdout)  # $$: the shell's pid
    leftover = int(channel.run("sleep 305 >/dev/null 2>&1 & echo $!", timeout=10).stdout)
    channel.close()
    assert gone(leftover) and gone(shell_pid)
    assert set(threading.enumerate()) <= before
    with pytest.raises(ChannelError, match="closed"):
        channel.put(tmp_path / "x", "/tmp/x")


def test_one_thing_at_a_time(chan: SshChannel, tmp_path: Path) -> None:
    errors: list[Exception] = []

    def on_line(line: OutputLine) -> None:
        try:
            chan.run("true", timeout=5)
        except ChannelError as exc:
            errors.append(exc)

    chan.run("echo first", timeout=10, on_line=on_line)
    assert len(errors) == 1 and "in progress" in str(errors[0])


# -- files -----------------------------------------------------------------------------


def test_sftp_round_trip(chan: SshChannel, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    source, back = tmp_path / "source.bin", tmp_path / "back.bin"
    source.write_bytes(data)
    chan.put(source, str(tmp_path / "remote.bin"))
    remote_sum = chan.run(f"sha256sum {tmp_path / 'remote.bin'}", timeout=20).stdout.split()[0]
    assert remote_sum == hashlib.sha256(data).hexdigest()
    chan.get(str(tmp_path / "remote.bin"), back)
    assert back.read_bytes() == data


def test_download_of_a_missing_file_names_host_and_path(chan: SshChannel, tmp_path: Path) -> None:
    with pytest.raises(ChannelError, match=r"node07.*/no/such/file.*does not exist"):
        chan.get("/no/such/file", tmp_path / "local")
    assert list(tmp_path.iterdir()) == []  # no partial file left
    assert chan.run("echo still-usable", timeout=10).ok


def test_upload_errors_are_clear(chan: SshChannel, tmp_path: Path) -> None:
    with pytest.raises(ChannelError, match=r"node07.*no such local file"):
        chan.put(tmp_path / "missing", "/tmp/x")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ChannelError, match=r"node07.*/no/such/dir/f.*does not exist"):
        chan.put(tmp_path / "f", "/no/such/dir/f")


# -- a host that dies ------------------------------------------------------------------


def test_frozen_sshd_ends_the_command_within_dead_after(private_sshd: Sshd) -> None:
    channel = private_sshd.channel("node07", dead_after=DEAD_AFTER)
    frozen_at: list[float] = []

    def on_line(line: OutputLine) -> None:
        if line.text == "started":
            private_sshd.signal_sshd(signal.SIGSTOP)  # the host hangs; TCP still answers
            frozen_at.append(time.monotonic())

    try:
        with pytest.raises(ChannelError) as err:
            channel.run("sleep 306 & echo started; wait", timeout=60, on_line=on_line)
        elapsed = time.monotonic() - frozen_at[0]
        assert elapsed <= DEAD_AFTER + MARGIN, f"noticed after {elapsed:.2f} s"
        message = str(err.value)
        assert "node07" in message and "sleep 306" in message and "no answer" in message
    finally:
        channel.close()


def test_a_silent_command_on_a_live_host_outlasts_dead_after(sshd_server: Sshd) -> None:
    # Keepalive probes answered by sshd keep a quiet command alive: only silence of
    # sshd itself ends it.
    channel = sshd_server.channel("node07", dead_after=1.0)
    try:
        assert channel.run("sleep 3; echo done", timeout=20).stdout == "done\n"
    finally:
        channel.close()


def test_killed_sshd_ends_the_command_at_once_and_a_restart_reconnects(
    private_sshd: Sshd,
) -> None:
    channel = private_sshd.channel("node07", dead_after=DEAD_AFTER)
    killed_at: list[float] = []

    def on_line(line: OutputLine) -> None:
        if line.text == "started":
            private_sshd.signal_sshd(signal.SIGKILL)  # listener and the session's sshd
            killed_at.append(time.monotonic())

    try:
        with pytest.raises(ChannelError) as err:
            channel.run("sleep 307 & echo started; wait", timeout=60, on_line=on_line)
        assert time.monotonic() - killed_at[0] <= DEAD_AFTER
        assert "node07" in str(err.value) and "sleep 307" in str(err.value)
        assert "connection lost" in str(err.value)
        private_sshd.restart()  # the host is back (same key, same port)
        assert channel.run("echo back", timeout=10).stdout == "back\n"
    finally:
        channel.close()


# -- refusing to connect ---------------------------------------------------------------


def test_changed_host_key_is_refused(private_sshd: Sshd, tmp_path: Path) -> None:
    pinned = private_sshd.info.host_key_fingerprint
    first = private_sshd.channel("node07", host_key_fingerprint=pinned)
    first.connect()
    first.close()
    info = private_sshd.restart(host_key=keygen(tmp_path / "new_host_key"))
    channel = private_sshd.channel("node07", host_key_fingerprint=pinned)
    with pytest.raises(ChannelError) as err:
        channel.connect()
    message = str(err.value)
    assert "node07" in message and "MISMATCH" in message
    assert pinned in message and info.host_key_fingerprint in message
    assert "serial console" in message
    channel.close()


def _known_hosts(path: Path, entry: str, public_key: Path) -> Path:
    key_type, key = public_key.read_text().split()[:2]
    path.write_text(f"{entry} {key_type} {key}\n")
    return path


def test_known_hosts_file_pins_the_key(sshd_server: Sshd, sshd: SshdInfo, tmp_path: Path) -> None:
    host_pub = Path(f"{sshd_server.host_key}.pub")
    good = _known_hosts(tmp_path / "good", f"[{sshd.address}]:{sshd.port}", host_pub)
    channel = SshChannel("node07", sshd.address, sshd.port, key_filename=sshd.client_key,
                         known_hosts=good)
    assert channel.run("echo ok", timeout=10).stdout == "ok\n"
    channel.close()

    other = _known_hosts(tmp_path / "other", "[192.0.2.1]:22", host_pub)
    channel = SshChannel("node07", sshd.address, sshd.port, key_filename=sshd.client_key,
                         known_hosts=other)
    with pytest.raises(ChannelError, match=r"node07.*unknown host key") as err:
        channel.connect()
    assert sshd.host_key_fingerprint in str(err.value)
    channel.close()


def test_wrong_key_is_refused_clearly(sshd: SshdInfo, tmp_path: Path) -> None:
    channel = SshChannel(
        "node07", sshd.address, sshd.port, key_filename=keygen(tmp_path / "stranger"),
        host_key_fingerprint=sshd.host_key_fingerprint,
    )
    with pytest.raises(ChannelError, match=r"node07.*login as 'root' refused.*authorized_keys"):
        channel.connect()
    channel.close()


def test_unknown_user_is_refused_clearly(sshd: SshdInfo) -> None:
    channel = SshChannel(
        "node07", sshd.address, sshd.port, user="nobody-here", key_filename=sshd.client_key,
        host_key_fingerprint=sshd.host_key_fingerprint,
    )
    with pytest.raises(ChannelError, match=r"node07.*login as 'nobody-here' refused"):
        channel.connect()
    channel.close()


def test_connection_refused_is_clear(sshd: SshdInfo) -> None:
    # A bound socket that does not listen: connecting to it is refused, and no other
    # process can take the port while the test holds it.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        channel = SshChannel("node07", "127.0.0.1", port, key_filename=sshd.client_key,
                             host_key_fingerprint=sshd.host_key_fingerprint)
        with pytest.raises(ChannelError, match=r"node07.*connection refused.*sshd"):
            channel.run("true", timeout=5)
        channel.close()


def test_a_malformed_fingerprint_is_refused_at_once() -> None:
    with pytest.raises(ChannelError, match=r"node07.*SHA256"):
        SshChannel("node07", "127.0.0.1", host_key_fingerprint="not-a-fingerprint")


def test_client_threads_use_paramiko_transport_only_while_connected(
    sshd_server: Sshd,
) -> None:
    channel = sshd_server.channel("node07")
    channel.connect()
    assert any(isinstance(t, paramiko.Transport) for t in threading.enumerate())
    channel.close()
    assert not any(
        isinstance(t, paramiko.Transport) and t.is_alive() for t in threading.enumerate()
    )


def test_each_new_shell_is_reported_before_its_first_command(
    sshd_server: Sshd, tmp_path: Path
) -> None:
    """A resumed run reaps the shells a killed controller left (harness.resume); the
    channel names each new shell's process group before anything runs in it."""
    from harness.resume import remember_shells
    from harness.store import Store

    channel = sshd_server.channel("node07")
    channel.connect()
    first = channel.shell_pgid
    assert first > 1
    with Store(tmp_path / "vet.sqlite") as store:
        store.start_run("r1", "quick", "inv")
        remember_shells(store, "r1", "node07", channel)  # the running shell: recorded now
        seen: list[int] = []
        recorded = channel.on_new_shell
        assert recorded is not None

        def also_seen(pgid: int) -> None:
            seen.append(pgid)
            recorded(pgid)

        channel.on_new_shell = also_seen

        def on_line(line: OutputLine) -> None:
            if line.text == "running":
                threading.Thread(target=channel.cancel).start()

        with pytest.raises(CommandCancelled):  # a cancel ends the shell; the next run
            channel.run("echo running; sleep 304", timeout=60, on_line=on_line)  # starts one
        assert seen == [], "reported before a shell was needed"
        echoed = int(channel.run("echo $$", timeout=10).stdout)
        channel.close()
        assert seen == [echoed] and echoed != first
        rows = store.query("SELECT payload_json FROM events WHERE kind = 'remote-shell'")
        assert [int(json.loads(r["payload_json"])["pgid"]) for r in rows] == [first, echoed]
