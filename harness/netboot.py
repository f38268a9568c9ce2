"""Booting a host from the network for a run: the booted-host fixture's work.

provision (a per-MAC iPXE script carrying this run's token and the controller's key)
-> open the serial console (before power-on: a console opened late loses the boot)
-> power on -> follow the boot to the live image's VET-READY line, with a deadline per
boot step -> check what the line says -> pin the host key it names -> SSH -> read
/proc/cmdline and verify the run token before anything else touches the host.

After VET-READY the controller's own work is on the way to the first stage: the SSH
connection is started the moment the line is checked, and the console bookkeeping
(boot-step events) happens while the key exchange runs.

The same path drives a lab guest and a rack server; only the inventory differs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.console.boot import Announce, BootPolicy, BootTracker, Step, TimelineEntry
from harness.console.serial import SerialChannel
from harness.console.watch import ConsoleWatch
from harness.errors import VetError
from harness.events import EventLog
from harness.models import Host, Severity
from harness.power import PowerDriver, PowerError, PowerState, power_driver
from harness.token import (
    TokenError,
    cmdline_values,
    key_for,
    make_token,
    token_fingerprint,
    verify_token,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from harness.console.ssh import SshChannel

#: The whole boot, power-on to VET-READY, on top of the per-step deadlines.
DEFAULT_BOOT_DEADLINE_S = 900.0
#: From VET-READY to a working SSH shell (the image announces once sshd listens).
SSH_DEADLINE_S = 60.0
#: How long the console reader tries to reopen a console server that went away (a
#: restarted ser2net or BMC serial-over-LAN): the watch is blind only for the gap.
CONSOLE_RECONNECT_S = 120.0


class BootFailed(VetError):
    """The host did not reach VET-READY: says where it stopped and what the console showed."""

    def __init__(self, message: str, timeline: list[TimelineEntry]) -> None:
        super().__init__(message)
        self.timeline = timeline


class HostRefused(VetError):
    """The host that answered is not the one this run provisioned (token, run or MAC)."""


@dataclass
class BootedHost:
    """A host up in the live image, reachable and proven to be ours."""

    channel: SshChannel
    console: SerialChannel | None
    watch: ConsoleWatch | None
    announce: Announce
    timeline: list[TimelineEntry]
    power: PowerDriver
    powered_on_at: float
    key_file: Path
    #: When SSH was up (shell started) and when the run token was verified (time.time()):
    #: with the VET-READY entry of `timeline`, the controller's share of the boot.
    connected_at: float = 0.0
    verified_at: float = 0.0


def state_home() -> Path:
    """Where vet keeps private state that must not go into reports/ (keys)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "vet"


def controller_key(run_id: str, host: str) -> tuple[Path, str]:
    """A fresh ed25519 key for this run and host: (private key file 0600, public line).

    It reaches the host only on its kernel command line, so it opens that one boot.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = state_home() / "runs" / run_id / host
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = folder / "id_ed25519"
    if private.exists():
        loaded = serialization.load_ssh_private_key(private.read_bytes(), password=None)
        assert isinstance(loaded, Ed25519PrivateKey)
        key = loaded
    else:
        key = write_new_key(private)
    return private, f"{public_line(key)} vet-{run_id}-{host}"


def write_new_key(private: Path) -> Ed25519PrivateKey:
    """A new ed25519 key written to `private` (OpenSSH format, created 0600, never over
    an existing file)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.OpenSSH,
                                   serialization.NoEncryption()))
    return key


def public_line(key: Ed25519PrivateKey) -> str:
    """'ssh-ed25519 AAAA...' of the key, as authorized_keys takes it (no comment)."""
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def _timeline_text(timeline: list[TimelineEntry], powered_on_at: float) -> str:
    return ", ".join(f"{e.step.label} +{e.at - powered_on_at:.1f} s" for e in timeline)


def netboot(host: Host, *, run_id: str, console_log: Path, events: EventLog,
            policy: BootPolicy | None = None,
            deadline_s: float = DEFAULT_BOOT_DEADLINE_S,
            on_console_open: Callable[[SerialChannel, ConsoleWatch], None] | None = None,
            ) -> BootedHost:
    """Provision, power on and boot `host` into the live image for run `run_id`."""
    from harness.provision import provision_host  # imports ansible-runner: slow

    pxe = host.pxe
    if pxe is None:
        raise VetError(f"host {host.name} has no vet_pxe: vet cannot network-boot it; give "
                       "it a vet_pxe (see docs/PXE.md) or an ansible_host that is up")
    if not host.macs:
        raise VetError(f"host {host.name} has no MAC address to boot from; set vet_macs")
    mac = host.macs[0]
    key_file, public_key = controller_key(run_id, host.name)
    token_key = key_for(pxe)
    token = make_token(token_key, run_id=run_id, host=host.name, mac=mac,
                       expires_at=int(time.time()) + pxe.token_ttl_s)
    started = time.monotonic()
    script = provision_host(pxe, host, run_id=run_id, token=token, ssh_public_key=public_key,
                            on_event=lambda event: events.emit("provision", "ansible", **event))
    events.emit("harness", "provisioned", script=str(script), token=token_fingerprint(token),
                seconds=round(time.monotonic() - started, 2))

    tracker = BootTracker(host.name, policy)
    watch = ConsoleWatch(tracker=tracker, host=host.name)
    console: SerialChannel | None = None
    settled = threading.Event()
    if host.console:
        console = SerialChannel(host.name, host.console, user=host.console_login.user,
                                password=host.console_login.password, console_log=console_log,
                                redact=(token,), reconnect_s=CONSOLE_RECONNECT_S)
        console.subscribe_state(lambda state, detail: events.emit(
            "console", f"console-{state}", detail=detail))
        console.subscribe_lines(watch.feed_lines)
        if on_console_open is not None:
            on_console_open(console, watch)
        console.subscribe_lines(lambda lines, at, offset: settled.set()
                                if tracker.ready is not None else None)
        watch.on_finding(lambda f: settled.set() if f.severity is Severity.CRITICAL else None)
        console.open()

    power = power_driver(host)
    try:
        boot_pxe = getattr(power, "boot_pxe", None)
        if callable(boot_pxe):
            boot_pxe()
        was_on = power.status() is PowerState.ON
        tracker.power_on()
        powered_on_at = time.time()
        if was_on:
            power.cycle()
        else:
            power.on()
    except PowerError as exc:
        if console is not None:
            console.close()
        raise BootFailed(f"host {host.name}: could not power it on: {exc}", []) from exc
    events.emit("power", "power-on", driver=power.driver, cycled=was_on)

    try:
        if console is None:
            raise BootFailed(f"host {host.name} has no vet_console: vet cannot see it boot or "
                             "learn its address and host key; give it a serial console",
                             tracker.timeline())
        announce = _await_ready(host, tracker, watch, settled, powered_on_at, deadline_s)
        _check_announce(host, announce, run_id, mac, token)
        from harness.console.ssh import SshChannel  # paramiko on use (harness.console)

        channel = SshChannel(host.name, announce.ip, port=host.connection.port or 22,
                             user=host.connection.user or "root", key_filename=str(key_file),
                             host_key_fingerprint=announce.hostkey_fingerprint,
                             # A host that just booted may still be busy starting up.
                             connect_timeout=SSH_DEADLINE_S,
                             dead_after=host.connection.dead_after_s)
        try:
            connected_at = connect_while(channel.connect, lambda: [
                events.emit("console", "boot-step", step=entry.step.label,
                            seconds=round(entry.at - powered_on_at, 2))
                for entry in tracker.timeline()], f"vet-ssh-{host.name}")
            _verify_cmdline(host, channel, token_key, run_id, mac)
            verified_at = time.time()
        except BaseException:
            channel.close()
            raise
    except BaseException:
        console.close() if console is not None else None
        raise
    ready_at = next((e.at for e in tracker.timeline() if e.step is Step.READY), verified_at)
    events.emit("harness", "booted", ip=announce.ip, hostkey=announce.hostkey_fingerprint,
                seconds=round(time.time() - powered_on_at, 1),
                ssh_after_ready_s=round(connected_at - ready_at, 3),
                verified_after_ready_s=round(verified_at - ready_at, 3))
    return BootedHost(channel=channel, console=console, watch=watch, announce=announce,
                      timeline=tracker.timeline(), power=power, powered_on_at=powered_on_at,
                      key_file=key_file, connected_at=connected_at, verified_at=verified_at)


def connect_while(connect: Callable[[], object], work: Callable[[], object],
                  name: str = "vet-ssh") -> float:
    """Run `connect` (an SSH channel's: TCP, key exchange, login, shell) on a thread
    while `work` runs here; return when `connect` ended (time.time()). The key exchange
    waits on the host's (maybe emulated) CPU, so the controller's bookkeeping costs
    nothing beside it. A failure of either is raised once both have ended."""
    def timed() -> float:
        connect()
        return time.time()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as pool:
        connecting = pool.submit(timed)
        work()
        return connecting.result()


def _await_ready(host: Host, tracker: BootTracker, watch: ConsoleWatch,
                 settled: threading.Event, powered_on_at: float,
                 deadline_s: float) -> Announce:
    """Wait for VET-READY, a critical console finding, or the deadline; step deadlines are
    checked at least once a second while the console is silent."""
    deadline = time.monotonic() + deadline_s
    while tracker.ready is None and watch.death is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            step = tracker.step.label if tracker.step is not None else "power-on"
            last = next((line for line in reversed(tracker.tail()) if line.strip()), "")
            raise BootFailed(
                f"host {host.name}: no VET-READY within {deadline_s:g} s of power-on; the boot "
                f"stopped at {step}; last console line: {last.strip()[:200]!r} (boot so far: "
                f"{_timeline_text(tracker.timeline(), powered_on_at)})", tracker.timeline())
        settled.wait(min(remaining, 1.0))
        watch.check_deadlines()
    death = watch.death
    if death is not None and tracker.ready is None:
        raise BootFailed(f"{death.message} (boot so far: "
                         f"{_timeline_text(tracker.timeline(), powered_on_at)})",
                         tracker.timeline())
    assert tracker.ready is not None
    return tracker.ready


def _check_announce(host: Host, announce: Announce, run_id: str, mac: str, token: str) -> None:
    problems = []
    if announce.run_id != run_id:
        problems.append(f"it booted for run {announce.run_id}, not {run_id}")
    if announce.mac is not None and announce.mac != mac:
        problems.append(f"it announced MAC {announce.mac}, not {mac}")
    if announce.token_fingerprint not in (None, token_fingerprint(token)):
        problems.append("it booted with another run token (a stale or foreign boot script)")
    if problems:
        raise HostRefused(f"host {host.name}: refused, not touched further: "
                          + "; ".join(problems) + f" (announce: {announce.raw.strip()!r})")


def _verify_cmdline(host: Host, channel: SshChannel, token_key: bytes, run_id: str,
                    mac: str) -> None:
    """Read the kernel command line over SSH and verify the run token on it."""
    # The shell's own `read`, not cat: no program to start on a host that may be emulated.
    result = channel.run('IFS= read -r line </proc/cmdline && printf "%s\\n" "$line"',
                         SSH_DEADLINE_S)
    if not result.ok:
        raise HostRefused(f"host {host.name}: cannot read /proc/cmdline "
                          f"(exit {result.exit_status}); refused")
    values = cmdline_values(result.stdout)
    token = values.get("vet.token")
    if not token:
        raise HostRefused(f"host {host.name}: refused, not touched further: its kernel "
                          "command line has no vet.token (not booted by vet)")
    try:
        verify_token(token_key, token, run_id=run_id, host=host.name, mac=mac)
    except TokenError as exc:
        raise HostRefused(f"host {host.name}: refused, not touched further: the run token on "
                          f"its kernel command line does not verify: {exc}") from None
    if values.get("vet.run") != run_id:
        raise HostRefused(f"host {host.name}: refused: vet.run is {values.get('vet.run')!r}, "
                          f"not {run_id}")


def release(host: Host, booted: BootedHost | None, events: EventLog, *,
            power_off: bool = True) -> None:
    """A host that passed: its boot script goes back to the local disk, then power off."""
    from harness.provision import release_host

    if host.pxe is not None:
        release_host(host.pxe, host,
                     on_event=lambda event: events.emit("provision", "ansible", **event))
        events.emit("harness", "released", script="local disk")
    if power_off and booted is not None:
        booted.power.off()
        events.emit("power", "power-off", driver=booted.power.driver)
