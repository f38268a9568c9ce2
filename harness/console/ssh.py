"""SshChannel: commands on a host over one persistent SSH connection (paramiko).

Which path runs a command
    Every command, short or long, runs in one persistent shell per connection
    (`exec bash --norc --noprofile`, started without a pty) and is found in its byte
    stream by the markers of harness.console.markers. sshd's per-session setup
    (~130 ms per exec_command, measured here) is paid once per connection, so
    `run("true")` takes a few ms. Stage commands use the same shell: streaming,
    deadlines and cancel then work one way for every command. Other channels are
    opened only to deliver a kill (exec) and for files (SFTP). A command runs in a
    subshell with stdin from /dev/null, so it cannot change the shell's state; `$$` in
    it is the shell's pid (LocalChannel's `bash -c` gives the command's own).

Why no pty
    A pty merges stderr into stdout, cuts lines at 4 KiB and interprets control bytes.
    Without one, stdout and stderr are two SSH streams; each gets its own begin and
    end markers, and a command is done when both ends arrived, so they stay apart.

Cancel, timeout, KeyboardInterrupt
    Closing a channel that has no pty leaves the remote command running, and sshd
    refuses `signal` requests for root sessions. sshd makes the shell a session
    leader, so the shell and every command it runs share one process group. To stop a
    command, vet runs `kill -s KILL -- -PGID` on a short exec channel (~0.15 s here): the
    command, its children and anything earlier commands left in the background die
    with the shell, as LocalChannel kills a process group. vet waits (bounded) for the
    shell's session to end, and the next run starts a new shell. close() has the idle
    shell kill its own group the same way, so nothing a channel started outlives it
    (except what left the group on purpose, e.g. with setsid).

Dead peer
    paramiko's transport keepalive never waits for an answer. The socket is made here
    with TCP_USER_TIMEOUT = dead_after (data unacknowledged that long: the kernel drops
    the connection, e.g. network gone) and TCP keepalive. While a command runs and the
    host has been quiet for dead_after/4, a probe thread sends a
    `keepalive@openssh.com` global request (global_request blocks, hence the thread).
    Nothing heard for 0.9 x dead_after, neither output nor a probe reply (a frozen
    sshd's kernel still acknowledges TCP), ends the command with a ChannelError naming
    the host and the command within dead_after. A killed sshd closes the connection,
    which wakes the reader at once. paramiko's channel requests wait without a
    deadline, so connect, kill and SFTP setup run under a timer that drops the
    connection when it expires; SFTP reads time out after dead_after. A lost connection
    leaves the shell and its command running on the host (nothing there kills them): the
    next connection kills that shell's process group before it runs anything.

Host keys
    The host key is checked before authenticating: against the SHA256 fingerprint the
    host printed on its console, or a known_hosts file (~/.ssh/known_hosts when neither
    is given). An unknown or changed key is refused; nothing is ever added.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from harness.console.channel import (
    ChannelError,
    CommandCancelled,
    CommandTimeout,
    LineHandler,
    OutputLine,
)
from harness.console.markers import Framed, MarkerReader, new_command_id
from harness.models import CommandResult


def _import_paramiko_without_invoke() -> ModuleType:
    """paramiko, imported with `invoke` hidden from it.

    paramiko.config imports invoke when it can, only for ssh_config's `Match exec`, which
    vet never uses (it reads no ssh_config). That import cost every xdist worker ~0.1 s
    and ~6 MB. Hidden only while paramiko loads: a later `import invoke` works as usual.
    """
    hide = "invoke" not in sys.modules
    if hide:
        sys.modules["invoke"] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        import paramiko
    finally:
        if hide:
            del sys.modules["invoke"]
    return paramiko


if TYPE_CHECKING:
    import paramiko
else:
    paramiko = _import_paramiko_without_invoke()


log = logging.getLogger(__name__)

_SHELL = "exec bash --norc --noprofile"
#: Seconds to try stopping a command on a host the console saw panic or reset.
HOST_GONE_KILL_S = 2.0
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
# A host key type in known_hosts -> the algorithms that negotiate it.
_KEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}


class _Lost(Exception):
    """The connection (or just the shell session, if `connection` is False) is gone."""

    def __init__(self, reason: str, connection: bool = True) -> None:
        super().__init__(reason)
        self.connection = connection


def _framed(command: str, marker_id: str) -> Framed:
    """Like markers.frame(), with two differences. The command travels single-quoted,
    not base64: with no tty between vet and the shell no byte is interpreted, so the
    quoting is exact, and it saves base64's fork and exec per command (1.4 ms instead
    of 8 ms for `true`, measured here under load). And stderr gets its own begin and
    end markers: the end of both streams says the command is done and stderr drained."""
    marker = f"\\036VET:{marker_id}"
    line = (
        f"printf '{marker}:B\\036\\n'; printf '{marker}:B\\036\\n' >&2; "
        f"( eval {shlex.quote(command)} ) </dev/null; "
        f"printf '{marker}:E:%d\\036\\n' \"$?\"; printf '{marker}:E:0\\036\\n' >&2\n"
    )
    return Framed(command, marker_id, line)


class _Job:
    """One command's two streams, each read through its own pair of markers."""

    def __init__(self, framed: Framed, command_id: str, on_line: LineHandler | None) -> None:
        self.framed = framed
        self.command_id = command_id
        self.on_line = on_line
        self.deliver = True  # False once the command is being stopped
        self.out = MarkerReader(framed, self._handler("stdout"))
        self.err = MarkerReader(framed, self._handler("stderr"))

    @property
    def done(self) -> bool:
        return self.out.done and self.err.done

    def stray(self) -> str:
        """What the shell wrote outside the markers (diagnostics for a broken shell)."""
        data = bytes(self.out.before + self.err.before)
        return data.decode("utf-8", errors="replace").strip()[-300:]

    def last_line(self) -> str:
        text = (self.out.output + self.err.output).rstrip()
        return text.rsplit("\n", 1)[-1][-200:]

    def _handler(self, stream: str) -> Callable[[str], None] | None:
        if self.on_line is None:
            return None
        on_line = self.on_line

        def handle(text: str) -> None:
            if self.deliver:
                on_line(OutputLine(stream, text, self.command_id))

        return handle


class SshChannel:
    """Runs commands on one host through one persistent SSH connection and shell."""

    transport = "ssh"
    separates_stderr = True

    def __init__(
        self,
        name: str,
        address: str,
        port: int = 22,
        user: str = "root",
        key_filename: str | Path | None = None,
        host_key_fingerprint: str | None = None,
        known_hosts: str | Path | None = None,
        connect_timeout: float = 10.0,
        dead_after: float = 5.0,
    ) -> None:
        self.name = name
        self.address = address
        self.port = port
        self.user = user
        self.key_filename = Path(key_filename) if key_filename is not None else None
        self.connect_timeout = connect_timeout
        self.dead_after = dead_after
        self.known_hosts: Path | None = None
        self.host_key_fingerprint: str | None = None
        if host_key_fingerprint is not None:
            match = _FINGERPRINT.search(host_key_fingerprint)
            if match is None:
                raise ChannelError(
                    f"{self._who}: host key fingerprint {host_key_fingerprint!r} is not a "
                    "SHA256 fingerprint as OpenSSH prints it (SHA256: and 43 characters)"
                )
            self.host_key_fingerprint = match.group(0)
        if known_hosts is not None:
            self.known_hosts = Path(known_hosts)
        elif host_key_fingerprint is None:
            self.known_hosts = Path.home() / ".ssh" / "known_hosts"
        self._ssh: paramiko.Transport | None = None
        self._sock: socket.socket | None = None
        self._shell: paramiko.Channel | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._probe: threading.Thread | None = None
        self._pgid = 0  # the persistent shell's process group on the host
        #: Called with the process group of each new persistent shell, before any command
        #: runs in it (the run store keeps it for a resumed run: harness.resume). Set by
        #: the owner; an exception from it is logged, never raised into a command.
        self.on_new_shell: Callable[[int], None] | None = None
        #: Process groups of shells whose connection was lost mid-command: what they ran
        #: may still run on the host; they are killed once the host answers again.
        self._orphans: list[int] = []
        self._heard = 0.0  # when the host last showed it is alive (monotonic)
        self._busy = threading.Lock()  # one command or transfer at a time
        self._doing = ""
        self._cancelled = threading.Event()
        self._host_gone = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._closed = False

    @property
    def _who(self) -> str:
        return f"host {self.name} ({self.user}@{self.address}:{self.port})"

    # -- the Channel protocol ------------------------------------------------------

    def run(
        self,
        command: str,
        timeout: float,
        on_line: LineHandler | None = None,
        command_id: str | None = None,
    ) -> CommandResult:
        with self._exclusive(f"run {command!r}"):
            self._cancelled.clear()
            self._ensure_shell()
            return self._execute(command, timeout, on_line, command_id or new_command_id())

    def cancel(self, host_gone: bool = False) -> None:
        """Stop the running command. `host_gone`: the console saw the host's OS end (a
        panic, a reset): stopping it on the host gets HOST_GONE_KILL_S, not dead_after,
        so the stage ends within seconds of the death."""
        if host_gone:
            self._host_gone.set()
        self._cancelled.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Stop what runs, end the shell's process group on the host (what commands left
        running in the background ends with the channel), drop the connection, join
        every thread."""
        if self._closed:
            return
        self._closed = True
        self.cancel()
        idle = self._busy.acquire(timeout=2 * self.dead_after + self.connect_timeout)
        try:
            if idle:
                self._end_shell()
            self._disconnect()
        finally:
            if idle:
                wake_r, wake_w = self._wake_r, self._wake_w
                self._wake_r = self._wake_w = -1
                os.close(wake_r)
                os.close(wake_w)
                self._busy.release()

    # -- connection ---------------------------------------------------------------

    def connect(self) -> None:
        """Connect and start the shell now (run() does it on first use otherwise)."""
        with self._exclusive("connect"):
            self._ensure_shell()

    def _ensure_shell(self) -> None:
        if self._ssh is None or not self._ssh.is_active():
            self._disconnect()
            self._connect()
        if self._shell is None:
            self._open_shell()
            self._reap_orphans()

    def _reap_orphans(self) -> None:
        """Kill what lost sessions left running (a killed sshd, a dead link or a frozen
        host leaves the shell and its command running). A group is killed only if its
        leader is still one of vet's shells: after a reboot the number may be another's."""
        while self._orphans:
            pgid = self._orphans.pop()
            self._execute(
                f"[ \"$(tr '\\0' ' ' < /proc/{pgid}/cmdline 2>/dev/null)\" = "
                f"'{_SHELL.removeprefix('exec ')} ' ] && kill -s KILL -- -{pgid}; true",
                self.connect_timeout, None, "reap", cancellable=False)

    def _connect(self) -> None:
        key = self._load_key()
        sock = self._open_socket()
        ssh = paramiko.Transport(sock)
        ssh.banner_timeout = ssh.handshake_timeout = ssh.auth_timeout = self.connect_timeout
        self._ssh, self._sock = ssh, sock
        try:
            with self._deadline(self.connect_timeout, "connecting"):
                expected, source = self._expected_keys(ssh)
                try:
                    ssh.start_client(timeout=self.connect_timeout)
                except (paramiko.SSHException, EOFError, OSError) as exc:
                    raise ChannelError(
                        f"{self._who}: SSH handshake failed: {exc or type(exc).__name__}; "
                        "is it sshd that listens on this port?"
                    ) from None
                self._check_host_key(ssh.get_remote_server_key(), expected, source)
                self._authenticate(ssh, key)
        except BaseException:
            self._disconnect()
            raise

    def _open_socket(self) -> socket.socket:
        """A TCP socket whose kernel gives up on unacknowledged data after dead_after."""
        try:
            sock = socket.create_connection((self.address, self.port), self.connect_timeout)
        except ConnectionRefusedError:
            raise ChannelError(
                f"{self._who}: connection refused: nothing listens on port {self.port}; "
                "is the host up with sshd running (booted into the live image)?"
            ) from None
        except TimeoutError:
            raise ChannelError(
                f"{self._who}: no answer within {self.connect_timeout:g} s: host down, "
                "wrong address, or a firewall drops the connection"
            ) from None
        except OSError as exc:
            raise ChannelError(f"{self._who}: cannot connect: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(self.dead_after * 1000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(self.dead_after)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, max(1, int(self.dead_after)))
        return sock

    def _load_key(self) -> paramiko.PKey:
        path = self.key_filename
        if path is None:
            found = [Path.home() / ".ssh" / n for n in _DEFAULT_KEYS]
            path = next((p for p in found if p.exists()), None)
            if path is None:
                raise ChannelError(
                    f"{self._who}: no key_filename given and none of "
                    f"{', '.join(str(p) for p in found)} exists"
                )
        try:
            return paramiko.PKey.from_path(path)
        except FileNotFoundError:
            raise ChannelError(f"{self._who}: SSH key {path} does not exist") from None
        except paramiko.PasswordRequiredException:
            raise ChannelError(
                f"{self._who}: SSH key {path} is passphrase-protected; vet needs a key "
                "it can use unattended"
            ) from None
        except (paramiko.SSHException, ValueError, OSError) as exc:
            raise ChannelError(f"{self._who}: cannot read SSH key {path}: {exc}") from None

    def _known_hosts_entry(self) -> str:
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def _expected_keys(self, ssh: paramiko.Transport) -> tuple[set[str], str]:
        """Fingerprints the host may offer, and where they come from; prefers their types."""
        if self.host_key_fingerprint is not None:
            return {self.host_key_fingerprint}, "the fingerprint given for the host"
        assert self.known_hosts is not None
        try:
            keys = paramiko.HostKeys(str(self.known_hosts)).lookup(self._known_hosts_entry())
        except OSError as exc:
            raise ChannelError(
                f"{self._who}: cannot read known_hosts file {self.known_hosts}: "
                f"{exc.strerror or exc}"
            ) from None
        if not keys:
            return set(), f"known_hosts file {self.known_hosts}"
        wanted = [a for t in keys for a in _KEY_ALGORITHMS.get(t, (t,))]
        options = ssh.get_security_options()
        known = [a for a in wanted if a in options.key_types]
        options.key_types = tuple(known + [a for a in options.key_types if a not in known])
        return {key.fingerprint for key in keys.values()}, f"known_hosts file {self.known_hosts}"

    def _check_host_key(self, key: paramiko.PKey, expected: set[str], source: str) -> None:
        offered = f"{key.get_name()} {key.fingerprint}"
        if key.fingerprint in expected:
            return
        if not expected:
            raise ChannelError(
                f"{self._who}: unknown host key: {source} has no key for "
                f"{self._known_hosts_entry()}; the host offered {offered}. Compare it with "
                "the fingerprint the host prints on its serial console at boot, then pass "
                "that as host_key_fingerprint or add the key to known_hosts. Not connecting."
            )
        raise ChannelError(
            f"{self._who}: HOST KEY MISMATCH: expected {', '.join(sorted(expected))} "
            f"({source}), the host offered {offered}. Either the host was reinstalled "
            "(new key) or something else answers at this address. Check the fingerprint "
            "on the host's serial console; if the change is legitimate, use the new one"
            + (
                f" (ssh-keygen -R '{self._known_hosts_entry()}' -f {self.known_hosts})"
                if self.host_key_fingerprint is None
                else ""
            )
            + ". Not connecting."
        )

    def _authenticate(self, ssh: paramiko.Transport, key: paramiko.PKey) -> None:
        what = f"key {self.key_filename or '~/.ssh'} ({key.get_name()} {key.fingerprint})"
        try:
            ssh.auth_publickey(self.user, key)
        except paramiko.BadAuthenticationType as exc:
            raise ChannelError(
                f"{self._who}: sshd does not accept public-key logins (it allows "
                f"{', '.join(exc.allowed_types) or 'nothing'}); enable PubkeyAuthentication"
            ) from None
        except paramiko.AuthenticationException:
            raise ChannelError(
                f"{self._who}: login as {self.user!r} refused with {what}: check the user "
                f"name, and that the public key is in ~{self.user}/.ssh/authorized_keys on "
                "the host (the live image installs the controller's key at boot)"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ChannelError(f"{self._who}: authentication failed: {exc}") from None
        if not ssh.is_authenticated():
            raise ChannelError(
                f"{self._who}: login as {self.user!r} with {what} needs a further "
                "authentication step vet cannot do"
            )

    def _open_shell(self) -> None:
        """Start the persistent shell and check it can run vet's command wrapper."""
        ssh = self._ssh
        assert ssh is not None
        try:
            with self._deadline(self.connect_timeout, "starting the shell"):
                shell = ssh.open_session(timeout=self.connect_timeout)
                shell.exec_command(_SHELL)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._disconnect()
            raise ChannelError(f"{self._who}: cannot start a shell session: {exc}") from None
        shell.settimeout(self.dead_after)  # bounds sendall when the host stops reading
        self._shell = shell
        # The shell leads its own process group (sshd made it a session leader); a cancel
        # kills that group. `$$` in the framed subshell is the shell's pid.
        result = self._execute(
            "read -r _ _ _ _ pgid _ < /proc/$$/stat && echo vet-ready $pgid",
            self.connect_timeout, None, "handshake", cancellable=False,
        )
        match = re.fullmatch(r"vet-ready (\d+)\n", result.stdout)
        if result.exit_status != 0 or match is None or int(match.group(1)) <= 1:
            self._drop_shell()
            raise ChannelError(
                f"{self._who}: the host's shell cannot run vet's commands (needs bash "
                f"and /proc): exit status {result.exit_status}, stdout "
                f"{result.stdout[-200:]!r}, stderr {result.stderr[-200:]!r}"
            )
        self._pgid = int(match.group(1))
        if self.on_new_shell is not None:
            try:
                self.on_new_shell(self._pgid)
            except Exception:  # bookkeeping: the command still runs
                log.warning("%s: recording the new shell's process group failed",
                            self._who, exc_info=True)

    @property
    def shell_pgid(self) -> int:
        """The process group of the persistent shell; 0 while none is started."""
        return self._pgid

    @contextlib.contextmanager
    def _deadline(self, seconds: float, doing: str) -> Iterator[None]:
        """Drop the connection if the block has not ended in time (paramiko's channel
        requests wait without a deadline), then report it as a ChannelError."""
        sock = self._sock
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(seconds, expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        except Exception:
            if expired.is_set():
                self._disconnect()
                raise ChannelError(
                    f"{self._who}: no answer from sshd within {seconds:g} s while {doing}; "
                    "the host may be frozen or unreachable"
                ) from None
            raise
        finally:
            timer.cancel()
            timer.join()

    def _end_shell(self) -> None:
        """Have the idle shell kill its own process group, and wait (bounded) for it."""
        shell = self._shell
        if shell is None or self._ssh is None:
            return
        with contextlib.suppress(_Lost, OSError, paramiko.SSHException, EOFError):
            self._send(shell, b"kill -s KILL 0\n")
            self._wait_ended(shell, time.monotonic() + self.dead_after)
        self._drop_shell()

    def _drop_shell(self) -> None:
        shell, self._shell, self._pgid = self._shell, None, 0
        if shell is not None:
            with contextlib.suppress(Exception):
                shell.close()

    def _disconnect(self) -> None:
        """Close everything of the connection; the host's shell sees EOF and exits."""
        ssh, sock, sftp = self._ssh, self._sock, self._sftp
        self._ssh = self._sock = self._sftp = self._shell = None
        self._pgid = 0
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()
        if ssh is not None:
            with contextlib.suppress(Exception):
                ssh.close()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        if ssh is not None and ssh.is_alive() and ssh is not threading.current_thread():
            ssh.join(timeout=5)
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.join(timeout=5)

    @contextlib.contextmanager
    def _exclusive(self, doing: str) -> Iterator[None]:
        if self._closed:
            raise ChannelError(f"{self._who}: channel is closed; cannot {doing}")
        if not self._busy.acquire(blocking=False):
            raise ChannelError(
                f"{self._who}: cannot {doing} while {self._doing} is in progress; "
                "a channel does one thing at a time"
            )
        self._doing = doing
        try:
            if self._closed:
                raise ChannelError(f"{self._who}: channel is closed; cannot {doing}")
            yield
        finally:
            self._doing = ""
            self._busy.release()

    # -- commands -----------------------------------------------------------------

    def _execute(
        self,
        command: str,
        timeout: float,
        on_line: LineHandler | None,
        command_id: str,
        cancellable: bool = True,
    ) -> CommandResult:
        shell = self._shell
        assert shell is not None
        started = time.monotonic()
        marker_id = new_command_id()
        job = _Job(_framed(command, marker_id), command_id, on_line)
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)  # wake-ups meant for an earlier command
        self._heard = started
        why: str | None = None
        stopped = False
        try:
            try:
                self._send(shell, job.framed.line.encode())
                why = self._pump(shell, job, started + timeout, cancellable)
                if why is not None:
                    stopped = self._stop(job)
            except _Lost:
                raise
            except BaseException:
                self._abandon(job)  # KeyboardInterrupt, a failing on_line: stop it too
                raise
        except _Lost as lost:
            orphan = self._pgid
            if lost.connection:
                self._disconnect()
            else:
                self._drop_shell()
            if orphan > 1:
                self._orphans.append(orphan)
            left = (f"it may still run on the host: vet kills it (process group {orphan}) "
                    "as soon as it reaches the host again" if orphan > 1
                    else "its state on the host is unknown")
            raise ChannelError(
                f"{self._who}: {lost} while running {command!r}; {left}. "
                f"Last output: {job.last_line()!r}"
            ) from None
        if why is not None:
            outcome = "stopped it" if stopped else "could not confirm it stopped"
            if why == "timeout":
                raise CommandTimeout(
                    f"{self._who}: {command!r} still running after {timeout:g} s; {outcome}. "
                    f"Last output: {job.last_line()!r}"
                )
            raise CommandCancelled(f"{self._who}: {command!r} cancelled; {outcome}")
        assert job.out.exit_status is not None
        return CommandResult(
            command=command,
            exit_status=job.out.exit_status,
            stdout=job.out.output,
            stderr=job.err.output,
            duration_s=time.monotonic() - started,
        )

    def _send(self, shell: paramiko.Channel, data: bytes) -> None:
        try:
            shell.sendall(data)
        except TimeoutError:
            raise _Lost(f"sshd took no input for {self.dead_after:g} s") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _Lost(f"connection lost ({exc or type(exc).__name__})") from None

    def _pump(
        self, shell: paramiko.Channel, job: _Job, deadline: float, cancellable: bool
    ) -> str | None:
        """Read the shell's streams into `job` until both end markers arrived; else say
        why it stopped: "timeout" or "cancel". Raises _Lost when the host is gone."""
        fd = shell.fileno()
        while not job.done:
            now = time.monotonic()
            if cancellable and self._cancelled.is_set():
                return "cancel"
            if now >= deadline:
                return "timeout"
            wait = min(deadline - now, self._watch(now))
            ready, _, _ = select.select([fd, self._wake_r], [], [], max(0.0, wait))
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            if not self._drain(shell, job) and (shell.closed or shell.eof_received):
                self._watch(time.monotonic())  # a lost connection explains it best
                said = job.stray()
                raise _Lost(
                    "the shell session on the host ended"
                    + (f" (it said {said!r})" if said else ""),
                    connection=False,
                )
        return None

    def _drain(self, shell: paramiko.Channel, job: _Job | None) -> bool:
        """Hand what arrived to `job` (or drop it); True if anything did."""
        heard = False
        while shell.recv_ready():
            data = shell.recv(65536)
            if job is not None:
                job.out.feed(data)
            heard = True
        while shell.recv_stderr_ready():
            data = shell.recv_stderr(65536)
            if job is not None:
                job.err.feed(data)
            heard = True
        if heard:
            self._heard = time.monotonic()
        return heard

    def _watch(self, now: float) -> float:
        """Raise _Lost once the host has been silent too long; probe it when it has been
        quiet a while. Returns how long the reader may wait before looking again."""
        ssh = self._ssh
        assert ssh is not None
        if not ssh.is_active():
            error = ssh.get_exception()
            reason = (
                "sshd closed it" if error is None or isinstance(error, EOFError)
                else str(error) or type(error).__name__
            )
            raise _Lost(f"connection lost ({reason})")
        quiet = now - self._heard
        limit = 0.9 * self.dead_after  # leaves time to tear down within dead_after
        if quiet >= limit:
            raise _Lost(
                f"connection lost: no answer from sshd for {quiet:.1f} s "
                "(keepalive unanswered; host frozen or unreachable)"
            )
        every = self.dead_after / 4
        if quiet < every:
            return every - quiet
        if self._probe is None or not self._probe.is_alive():
            self._probe = threading.Thread(
                target=self._keepalive, args=(ssh,), name=f"vet-ssh-probe-{self.name}",
                daemon=True,
            )
            self._probe.start()
        return limit - quiet

    def _keepalive(self, ssh: paramiko.Transport) -> None:
        """Ask sshd for a reply (OpenSSH answers even requests it does not know)."""
        with contextlib.suppress(Exception):
            ssh.global_request("keepalive@openssh.com", wait=True)
        if ssh.is_active():
            self._heard = time.monotonic()

    def _stop(self, job: _Job) -> bool:
        """Kill the shell's process group on the host: the command and all it started.
        True once the shell's session ended; the next run opens a new shell."""
        job.deliver = False
        shell, pgid = self._shell, self._pgid
        assert shell is not None
        # A host the console saw die gets a short try only: usually nobody answers, but
        # a panic line can also be printed by a host that lives on (a replayed log).
        bound = min(self.dead_after, HOST_GONE_KILL_S) if self._host_gone.is_set() \
            else self.dead_after
        deadline = time.monotonic() + bound
        try:
            if pgid <= 1:  # the handshake did not finish: only the shell can be running
                return False
            self._kill(pgid, deadline)
            return self._wait_ended(shell, deadline)
        finally:
            self._drop_shell()

    def _abandon(self, job: _Job) -> None:
        """Stop the command as run() leaves by an exception; never hides that exception."""
        try:
            self._stop(job)
        except _Lost as lost:
            if lost.connection:
                self._disconnect()
        except Exception:
            self._drop_shell()

    def _kill(self, pgid: int, deadline: float) -> None:
        """SIGKILL a process group on the host through a short exec channel (the shell
        is busy, and sshd refuses `signal` requests for root sessions)."""
        ssh = self._ssh
        assert ssh is not None
        remaining = max(0.1, deadline - time.monotonic())
        try:
            with self._deadline(remaining, f"stopping process group {pgid}"):
                chan = ssh.open_session(timeout=remaining)
                try:
                    chan.exec_command(f"kill -s KILL -- -{pgid}")  # any POSIX sh
                    chan.status_event.wait(remaining)
                finally:
                    chan.close()
        except ChannelError as exc:  # the caller names the host again: say it once
            raise _Lost(str(exc).removeprefix(f"{self._who}: ")) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _Lost(f"connection lost while stopping the command ({exc})") from None

    def _wait_ended(self, shell: paramiko.Channel, deadline: float) -> bool:
        """Wait until the shell's session ends (its processes are gone); False at the
        deadline (something the command started outside the group holds its output)."""
        fd = shell.fileno()
        while not (shell.closed or shell.eof_received):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            select.select([fd], [], [], remaining)
            self._drain(shell, None)
            self._watch(time.monotonic())
        return True

    # -- files --------------------------------------------------------------------

    def put(self, local_path: str | Path, remote_path: str) -> None:
        """Copy a local file to the host (SFTP)."""
        local = Path(local_path)
        with self._exclusive(f"upload {local} to {remote_path}"):
            if not local.is_file():
                raise ChannelError(f"{self._who}: cannot upload {local}: no such local file")
            sftp = self._sftp_client()
            with self._transfer_errors(f"upload {local} to {remote_path}", remote_path):
                sftp.put(str(local), remote_path)

    def get(self, remote_path: str, local_path: str | Path) -> None:
        """Copy a file from the host (SFTP); the local file appears only when complete."""
        local = Path(local_path)
        with self._exclusive(f"download {remote_path}"):
            if not local.parent.is_dir():
                raise ChannelError(
                    f"{self._who}: cannot download {remote_path} to {local}: "
                    f"local directory {local.parent} does not exist"
                )
            sftp = self._sftp_client()
            part = local.with_name(local.name + ".part")
            try:
                with self._transfer_errors(f"download {remote_path}", remote_path):
                    sftp.get(remote_path, str(part))
                part.replace(local)
            finally:
                part.unlink(missing_ok=True)

    def _sftp_client(self) -> paramiko.SFTPClient:
        self._ensure_shell()
        if self._sftp is None:
            ssh = self._ssh
            assert ssh is not None
            try:
                with self._deadline(self.connect_timeout, "starting SFTP"):
                    sftp = paramiko.SFTPClient.from_transport(ssh)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise ChannelError(
                    f"{self._who}: cannot start SFTP: {exc}; is the sftp Subsystem enabled "
                    "in sshd_config?"
                ) from None
            channel = sftp.get_channel() if sftp is not None else None
            if sftp is None or channel is None:
                raise ChannelError(f"{self._who}: cannot start SFTP")
            channel.settimeout(self.dead_after)  # a frozen host: socket.timeout, not a hang
            self._sftp = sftp
        return self._sftp

    @contextlib.contextmanager
    def _transfer_errors(self, doing: str, remote_path: str) -> Iterator[None]:
        try:
            yield
        except TimeoutError:
            self._disconnect()
            raise ChannelError(
                f"{self._who}: cannot {doing}: no answer from the host for "
                f"{self.dead_after:g} s (host frozen or unreachable)"
            ) from None
        except FileNotFoundError:
            raise ChannelError(
                f"{self._who}: cannot {doing}: {remote_path} (or its directory) does not "
                "exist on the host"
            ) from None
        except PermissionError:
            raise ChannelError(
                f"{self._who}: cannot {doing}: permission denied for {remote_path} on the host"
            ) from None
        except (paramiko.SSHException, EOFError) as exc:
            self._disconnect()
            raise ChannelError(f"{self._who}: cannot {doing}: connection lost ({exc})") from None
        except OSError as exc:  # SFTP's own failures carry no errno
            raise ChannelError(f"{self._who}: cannot {doing}: {exc.strerror or exc}") from None
