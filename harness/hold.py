"""Holding a failed host for a human, and releasing it.

On a host's first failure the host stays booted in the live image, its boot script as
it was, and vet hands the operator a way in: a fresh ed25519 key pair for this hold
(private key 0600 under the state directory, never under reports/), whose public key
goes into the host's authorized_keys over SSH, or over the serial console when SSH is
gone. The hold is a lease with a time-to-live (`vet_hold_ttl_h`); `vet holds` lists
it with the exact ssh command, `vet release` (or `vet janitor` once it expired) revokes
the key, runs release.yml (boot script back to the local disk) and powers the host off
unless `vet_release_power_off: false`.

The key is made with `cryptography` (already vet's dependency) rather than by running
ssh-keygen, so no passphrase prompt or PATH lookup can get in the way. The host key the
operator's ssh must trust is read over the vetted channel and checked against the
fingerprint the host announced at boot, then written to a known_hosts file of the hold's
own, so `ssh` needs no trust-on-first-use.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.console.channel import Channel
from harness.console.serial import SerialChannel
from harness.errors import VetError
from harness.events import EventLog
from harness.leases import holder, operator, when
from harness.models import Host
from harness.netboot import public_line, state_home, write_new_key
from harness.notify import Kind, notify_event
from harness.states import State
from harness.store import Store

#: Overrides where hold keys go (tests; a controller with its state on another disk).
HOLD_DIR_ENV = "VET_HOLD_DIR"
#: Seconds a key installation or revocation command may take on the host.
COMMAND_TIMEOUT_S = 30.0
#: From opening the serial console to a shell prompt on it.
CONSOLE_LOGIN_S = 60.0


class HoldError(VetError):
    """A hold cannot be released as asked; the text says what to do."""


@dataclass(frozen=True)
class HoldKey:
    """A hold's key pair on the controller: private key file and the public line."""

    private: Path
    public_line: str
    known_hosts: Path


def hold_home() -> Path:
    """$VET_HOLD_DIR, or holds/ under vet's state directory (outside reports/)."""
    override = os.environ.get(HOLD_DIR_ENV)
    return Path(override) if override else state_home() / "holds"


def new_hold_key(run_id: str, host: str, base: Path | None = None) -> HoldKey:
    """A fresh ed25519 key for this hold: <base>/<run>/<host>/id_ed25519, 0600."""
    folder = (base or hold_home()) / run_id / host
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    private = folder / "id_ed25519"
    private.unlink(missing_ok=True)  # a fresh pair per hold, never an old one reused
    key = write_new_key(private)
    return HoldKey(private, f"{public_line(key)} vet-hold-{run_id}-{host}",
                   folder / "known_hosts")


def _key_body(public_line: str) -> str:
    """'ssh-ed25519 AAAA...': what identifies the key in authorized_keys."""
    return " ".join(public_line.split()[:2])


def install_command(public_line: str) -> str:
    """Shell that appends the key to the login user's authorized_keys and checks it."""
    line, body = shlex.quote(public_line), shlex.quote(_key_body(public_line))
    return ("umask 077; mkdir -p ~/.ssh && printf '%s\\n' " + line
            + " >>~/.ssh/authorized_keys && grep -qF " + body + " ~/.ssh/authorized_keys")


def revoke_command(public_line: str) -> str:
    """Shell that removes every line with the key, then checks none is left."""
    body = shlex.quote(_key_body(public_line))
    return ("umask 077; f=~/.ssh/authorized_keys; if [ -f $f ]; then grep -vF " + body
            + " $f >$f.vet-new; mv -f $f.vet-new $f; fi; ! grep -qsF " + body + " $f")


def fingerprint(key_line: str) -> str | None:
    """OpenSSH's SHA256 fingerprint of a public key line ('type base64 [comment]')."""
    parts = key_line.split()
    if len(parts) < 2:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _known_host(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def trusted_host_key(channel: Channel, expected: str | None) -> str | None:
    """The host's public key line whose fingerprint is the one it announced, or None."""
    if expected is None:
        return None
    result = channel.run("cat /etc/ssh/ssh_host_*_key.pub", COMMAND_TIMEOUT_S)
    for line in result.stdout.splitlines():
        if fingerprint(line) == expected:
            return " ".join(line.split()[:2])
    return None


def ssh_command(key: HoldKey, user: str, address: str, port: int, pinned: bool) -> str:
    """The exact command an operator pastes to get in with the hold key."""
    parts = ["ssh", "-i", str(key.private), "-o", "IdentitiesOnly=yes",
             "-o", f"UserKnownHostsFile={key.known_hosts}"]
    if not pinned:
        parts += ["-o", "StrictHostKeyChecking=accept-new"]
    if port != 22:
        parts += ["-p", str(port)]
    parts.append(f"{user}@{address}")
    return shlex.join(parts)


def _on_console(console: SerialChannel, command: str) -> bool:
    console.login(CONSOLE_LOGIN_S)
    return console.run(command, COMMAND_TIMEOUT_S).ok


def _emit(events: EventLog | None, kind: str, **fields: Any) -> None:
    if events is not None:
        events.emit("harness", kind, **fields)


def _move(store: Store, run_id: str, host: str, state: State, reason: str,
          events: EventLog | None) -> None:
    previous = store.transition(run_id, host, state, reason)
    _emit(events, "state", reason=reason, stage=None,
          **{"from": previous.value, "to": state.value})


def open_hold(store: Store, run_id: str, host: Host, *, stage: str, reason: str,
              address: str, host_key: str | None, channel: Channel | None,
              console: SerialChannel | None, events: EventLog | None = None,
              key_dir: Path | None = None) -> dict[str, Any]:
    """Hold a failed, still-booted host: Failed -> Holding, key installed, lease recorded.

    `channel` is the run's SSH channel (tried first), `console` its serial console (the
    fallback when SSH is gone). A key that reaches neither is reported in the hold's
    note: the host is held all the same (nobody else may take it), but needs the console.
    """
    key = new_hold_key(run_id, host.name, key_dir)
    install = install_command(key.public_line)
    via: str | None = None
    problems: list[str] = []
    pinned_line: str | None = None
    if channel is not None:
        try:
            if channel.run(install, COMMAND_TIMEOUT_S).ok:
                via = "ssh"
                pinned_line = trusted_host_key(channel, host_key)
            else:
                problems.append("over SSH the key did not land in authorized_keys")
        except Exception as exc:  # a dead channel is why the console is there
            problems.append(f"SSH: {exc}")
    if via is None and console is not None:
        try:
            if _on_console(console, install):
                via = "console"
                pinned_line = trusted_host_key(console, host_key)
            else:
                problems.append("over the console the key did not land in authorized_keys")
        except Exception as exc:
            problems.append(f"console: {exc}")
    user = host.connection.user or "root"
    port = host.connection.port or 22
    if pinned_line is not None:
        key.known_hosts.write_text(f"{_known_host(address, port)} {pinned_line}\n")
        os.chmod(key.known_hosts, 0o600)
    command = ssh_command(key, user, address, port, pinned_line is not None)
    note = "" if via is not None else (
        "the hold key could not be installed (" + "; ".join(problems) + "): use the serial "
        f"console {host.console or '(none configured)'}")
    now = time.time()
    expires = now + host.hold.ttl_h * 3600
    _move(store, run_id, host.name, State.HOLDING,
          f"held for a human until {when(expires)}", events)
    hold_id = store.add_hold(
        run_id, host.name, stage=stage, reason=reason, opened_at=now, expires_at=expires,
        key_path=str(key.private), public_key=key.public_line,
        ssh_command=command if via is not None else None, ip=address, ssh_port=port,
        ssh_user=user, host_key=host_key, power_off=int(host.hold.power_off),
        opened_by=holder(), key_via=via, note=note)
    _emit(events, "hold-opened", hold_id=hold_id, expires_at=expires, key_via=via,
          ssh_command=command if via is not None else None, note=note)
    notify_event(Kind.HOLDING_OPENED, host=host.name,
                 title=f"vet: {host.name} held for you (failed {stage})",
                 body=f"{reason}\n{command if via is not None else note}\n"
                      f"held until {when(expires)}; vet release {host.name} frees it")
    return next(h for h in store.open_holds(host.name) if h["id"] == hold_id)


def find_hold(store: Store, host: str) -> dict[str, Any]:
    """The open hold of `host`, or a HoldError saying which hosts are held."""
    holds = store.open_holds(host)
    if not holds:
        held = sorted({h["host"] for h in store.open_holds()})
        raise HoldError(f"host {host} is not held in {store.path}; held hosts: "
                        f"{', '.join(held) or 'none'} (`vet holds` lists them)")
    return holds[-1]


def _revoke(hold: dict[str, Any], host: Host) -> tuple[bool, str]:
    """Remove the hold key from authorized_keys: over SSH with that very key, else the
    serial console. Returns (revoked, how or why not)."""
    from harness.console.ssh import SshChannel

    command = revoke_command(hold["public_key"])
    problems = []
    try:
        channel = SshChannel(host.name, hold["ip"], port=hold["ssh_port"] or 22,
                             user=hold["ssh_user"] or "root", key_filename=hold["key_path"],
                             host_key_fingerprint=hold["host_key"], connect_timeout=20,
                             dead_after=host.connection.dead_after_s)
        try:
            if channel.run(command, COMMAND_TIMEOUT_S).ok:
                return True, "key revoked over SSH"
            problems.append("SSH: the key is still in authorized_keys")
        finally:
            channel.close()
    except Exception as exc:
        problems.append(f"SSH: {exc}")
    if host.console:
        console = SerialChannel(host.name, host.console, user=host.console_login.user,
                                password=host.console_login.password)
        try:
            console.open()
            if _on_console(console, command):
                return True, "key revoked over the serial console"
            problems.append("console: the key is still in authorized_keys")
        except Exception as exc:
            problems.append(f"console: {exc}")
        finally:
            console.close()
    return False, "; ".join(problems)


def _forget_key(hold: dict[str, Any]) -> None:
    """Delete the hold's private key and known_hosts (only the files vet made)."""
    if not hold["key_path"]:
        return
    private = Path(hold["key_path"])
    for path in (private, private.parent / "known_hosts"):
        path.unlink(missing_ok=True)
    for folder in (private.parent, private.parent.parent):  # <run>/<host>, then <run>
        with contextlib.suppress(OSError):  # not empty: something else lives there
            folder.rmdir()


def _events_for(hold: dict[str, Any], reports_dir: Path | None) -> EventLog | None:
    """The held run's event log of the host, if its folder is still there."""
    if reports_dir is None:
        return None
    run_dir = reports_dir / "runs" / hold["run_id"] / hold["host"]
    return EventLog(run_dir / "events.jsonl", hold["run_id"], hold["host"]) \
        if run_dir.is_dir() else None


def _close(store: Store, hold: dict[str, Any], by: str, note: str,
           events: EventLog | None) -> None:
    """Holding -> Released in the held run, the hold closed with who, the key deleted."""
    if store.host_state(hold["run_id"], hold["host"]) is State.HOLDING:
        _move(store, hold["run_id"], hold["host"], State.RELEASED, f"released by {by}", events)
    store.close_hold(int(hold["id"]), by, note)
    _forget_key(hold)
    _emit(events, "hold-released", hold_id=hold["id"], by=by, what=note)


def _gone_hint(host: str) -> str:
    return (f"; if {host} is gone (lab down, machine pulled), `vet release {host} --forget` "
            "closes the hold without touching it")


def release_hold(store: Store, hold: dict[str, Any], host: Host, *, by: str | None = None,
                 power_off: bool | None = None, reports_dir: Path | None = None) -> str:
    """Release a held host: boot script to the local disk, key revoked, power per policy,
    Holding -> Released with who and when. Returns what was done, in one line.

    A key that cannot be revoked stops a release that leaves the host on (the key would
    keep opening it); when the host is powered off, the live image (in RAM) forgets it.
    """
    from harness.power import power_driver
    from harness.provision import release_host

    by = by or operator()
    off = bool(hold["power_off"]) if power_off is None else power_off
    events = _events_for(hold, reports_dir)
    try:
        done = []
        if host.pxe is not None:
            try:
                release_host(host.pxe, host, on_event=lambda e: _emit(events, "ansible", **e))
            except VetError as exc:
                raise HoldError(f"host {host.name}: release.yml failed: {exc}"
                                + _gone_hint(host.name)) from None
            done.append("boot script -> local disk")
        revoked, how = _revoke(hold, host)
        if not revoked and not off:
            raise HoldError(
                f"host {host.name}: the hold key could not be revoked ({how}), and the host "
                "would stay on with it; fix the access and release again, or release it "
                f"powered off: vet release {host.name} --power-off" + _gone_hint(host.name))
        done.append(how if revoked else f"key not revoked ({how}); it ends at power-off")
        if off:
            try:
                driver = power_driver(host)
                driver.off()
            except VetError as exc:
                raise HoldError(f"host {host.name}: could not power it off: {exc}"
                                + _gone_hint(host.name)) from None
            done.append(f"powered off ({driver.driver})")
        else:
            done.append("left on (vet_release_power_off: false)")
        note = "; ".join(done)
        _close(store, hold, by, note, events)
        return note
    finally:
        if events is not None:
            events.close()


def forget_hold(store: Store, hold: dict[str, Any], *, by: str | None = None,
                reports_dir: Path | None = None) -> str:
    """Close the hold of a host that is gone, touching nothing of it (no BMC, no PXE
    server, no SSH): for a lab taken down or a machine pulled from the rack."""
    by = by or operator()
    note = "forgotten: nothing done to the host (gone, says the operator)"
    events = _events_for(hold, reports_dir)
    try:
        _close(store, hold, by, note, events)
    finally:
        if events is not None:
            events.close()
    return note


def hold_lines(store: Store, run_id: str | None = None,
               holds: Sequence[dict[str, Any]] | None = None) -> list[str]:
    """Lines for `vet status` and the run summary: who is held, until when, how to get in."""
    rows = list(holds) if holds is not None else store.open_holds()
    lines = []
    for h in rows:
        if run_id is not None and h["run_id"] != run_id:
            continue
        way = h["ssh_command"] or (h["note"] or "no way in recorded")
        lines.append(f"  {h['host']} held since {when(h['opened_at'])} until "
                     f"{when(h['expires_at'])} ({h['stage']}): {way}")
    return (["held (vet holds, vet release HOST):", *lines]) if lines else []
