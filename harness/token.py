"""HMAC-SHA256 run tokens: proof, on a host's kernel command line, of which run booted it.

The destructive stages run only when the token the live image booted with was signed
for this run, this host and this MAC, and has not expired (DESIGN: gates). A token is

    v1.<expiry unix seconds>.<base64url(HMAC-SHA256) without padding>

(ASCII, no spaces, no `=`: safe inside `vet.token=` on a kernel command line). The
HMAC covers the version tag, run id, host name, MAC and expiry; only the expiry is
readable, so a token names neither the run nor the host. The key is a file (default
~/.config/vet/token.key, made on first use) or the vaulted `vet_pxe.token_key`.
Logs and announce lines show `token_fingerprint(token)`, never the token.

hmac/hashlib/secrets from the standard library do the cryptography; what is written
here is only the format around them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import VetError
from harness.inventory import normalize_mac
from harness.models import PxeConfig

__all__ = [
    "VERSION",
    "TokenError",
    "cmdline_values",
    "default_key_path",
    "key_for",
    "load_key",
    "load_or_create_key",
    "make_token",
    "token_fingerprint",
    "verify_token",
]

VERSION = "v1"
# No leading zeros: every token string has one meaning, so any change to it fails.
_TOKEN = re.compile(r"v1\.(0|[1-9]\d{0,11})\.([A-Za-z0-9_-]{43})")
_MIN_KEY_BYTES = 16
_KEY_FIX = "python3 -c 'import secrets; print(secrets.token_hex(32))' > FILE"


class TokenError(VetError):
    """A run token or its key is unusable; the message says why (never the token)."""


# --------------------------------------------------------------------------- tokens


def _signature(key: bytes, run_id: str, host: str, mac: str, expires_at: int) -> bytes:
    # JSON keeps the fields apart whatever they contain ("a.b"+"c" != "a"+"b.c").
    message = json.dumps([VERSION, run_id, host, mac, expires_at], separators=(",", ":"))
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _encoded(key: bytes, run_id: str, host: str, mac: str, expires_at: int) -> str:
    digest = _signature(key, run_id, host, mac, expires_at)
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _check_fields(key: bytes, run_id: str, host: str, mac: str) -> str:
    if not key:
        raise TokenError("the run token key is empty; give vet a key file or vet_pxe.token_key")
    if not run_id or not host:
        raise TokenError("a run token needs a run id and a host name (one of them is empty)")
    try:
        return normalize_mac(mac)
    except ValueError:
        raise TokenError(f"{mac!r} is not a MAC address; a run token is bound to the MAC "
                         "the host boots from, like 52:54:00:ab:01:02") from None


def make_token(key: bytes, *, run_id: str, host: str, mac: str, expires_at: int) -> str:
    """A token for `host` booting from `mac` in run `run_id`, valid until `expires_at`."""
    normalized = _check_fields(key, run_id, host, mac)
    if isinstance(expires_at, bool) or not isinstance(expires_at, int) or not (
            0 <= expires_at < 10**12):
        raise TokenError(f"a run token's expiry must be unix seconds, not {expires_at!r}")
    return f"{VERSION}.{expires_at}.{_encoded(key, run_id, host, normalized, expires_at)}"


def verify_token(key: bytes, token: str, *, run_id: str, host: str, mac: str,
                 now: float | None = None) -> None:
    """Return if `token` was signed with `key` for this run, host and MAC and is unexpired;
    else raise TokenError saying why (the signature is checked before the expiry, so an
    expiry is only reported for a token that is otherwise genuine)."""
    normalized = _check_fields(key, run_id, host, mac)
    match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        raise TokenError(f"host {host}: the run token is malformed (expected "
                         f"{VERSION}.<expiry>.<signature>); the host did not boot with a "
                         "script vet provisioned: provision and boot it again")
    expires_at = int(match.group(1))
    # Compared as text, not decoded bytes: base64's unused low bits would let two
    # spellings of one signature both pass.
    expected = _encoded(key, run_id, host, normalized, expires_at)
    if not hmac.compare_digest(match.group(2), expected):
        raise TokenError(
            f"host {host}: the run token does not match run {run_id}, host {host} and MAC "
            f"{normalized}: it was signed for another run, host or MAC, or with another key "
            "(a token cannot tell which); provision the host for this run and boot it again")
    current = time.time() if now is None else now
    if current >= expires_at:
        when = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        raise TokenError(f"host {host}: the run token expired at {when}; provision the host "
                         "again (vet_pxe.token_ttl_s sets how long a token lives)")


def token_fingerprint(token: str) -> str:
    """12 hex digits naming a token in logs and announce lines without revealing it."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def cmdline_values(cmdline: str) -> dict[str, str]:
    """`/proc/cmdline` as {name: value}; a bare word maps to "" and the last one wins.

    Hand-written because the kernel's rules are not a shell's (shlex would treat `'`
    and `\\` as quoting): only double quotes group, as in the kernel's next_arg().
    Arguments after a lone `--` belong to init and are left out.
    """
    values: dict[str, str] = {}
    for word in re.findall(r'(?:[^\s"]|"[^"]*"?)+', cmdline):
        if word == "--":
            break
        name, sep, value = word.partition("=")
        values[name.replace('"', "")] = value.replace('"', "") if sep else ""
    return values


# --------------------------------------------------------------------------- keys


def default_key_path() -> Path:
    """$XDG_CONFIG_HOME/vet/token.key, else ~/.config/vet/token.key."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "vet" / "token.key"


def load_key(path: str | Path) -> bytes:
    """The key in `path` (its text, stripped). The file must be ours, 0600 or stricter and
    hold at least 16 bytes: a key others can read lets them sign tokens."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TokenError(f"run token key {path} does not exist; create it with "
                         f"`{_KEY_FIX.replace('FILE', str(path))}` and `chmod 600 {path}`, "
                         "or let vet create it") from None
    except OSError as exc:
        raise TokenError(f"run token key {path} cannot be opened ({exc.strerror}); it must "
                         f"be a regular file owned by you with mode 0600 (chmod 600 {path})"
                         ) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise TokenError(f"run token key {path} is not a regular file; point "
                         "token_key_file at a key file")
    with os.fdopen(fd, "rb") as handle:
        if info.st_uid != os.geteuid():
            raise TokenError(f"run token key {path} is owned by uid {info.st_uid}, not by you "
                             f"(uid {os.geteuid()}); `chown {os.geteuid()} {path}` and "
                             f"`chmod 600 {path}`")
        if info.st_mode & 0o077:
            raise TokenError(f"run token key {path} has mode {stat.S_IMODE(info.st_mode):04o}: "
                             "others may read it and sign tokens; run `chmod 600 "
                             f"{path}` (and replace the key if it may have leaked)")
        key = handle.read().strip()
    if len(key) < _MIN_KEY_BYTES:
        state = "is empty" if not key else f"holds only {len(key)} bytes"
        raise TokenError(f"run token key {path} {state}; write a new key with "
                         f"`{_KEY_FIX.replace('FILE', str(path))}`")
    return key


def load_or_create_key(path: str | Path | None = None) -> bytes:
    """The key in `path` (default: default_key_path()), created first if it is missing:
    32 random bytes hex-encoded, mode 0600, parent directories 0700.

    The new key is written to a private temporary file and hard-linked into place, which
    fails if the name exists: of two processes racing, one key wins and both read it.
    """
    path = Path(path) if path is not None else default_key_path()
    if path.exists() or path.is_symlink():
        return load_key(path)
    try:
        for directory in reversed([path.parent, *path.parent.parents]):
            if not directory.exists():  # mkdir(parents=True) would make the parents 0755
                with contextlib.suppress(FileExistsError):
                    directory.mkdir(mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".token.key.")
    except OSError as exc:
        raise TokenError(f"cannot create run token key {path}: {exc.strerror}; create its "
                         "directory or set vet_pxe.token_key_file to a writable place") from None
    try:
        with os.fdopen(fd, "w") as handle:  # mkstemp made it 0600
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return load_key(path)


def key_for(pxe: PxeConfig) -> bytes:
    """The key a PXE setup signs with: the vaulted vet_pxe.token_key, else its key file
    (created on first use)."""
    if pxe.token_key:
        key = pxe.token_key.encode()
        if len(key) < _MIN_KEY_BYTES:
            raise TokenError(f"vet_pxe.token_key is too short (under {_MIN_KEY_BYTES} bytes); "
                             "vault a longer one: ansible-vault encrypt_string "
                             "\"$(openssl rand -hex 32)\" --name token_key")
        return key
    return load_or_create_key(pxe.token_key_file)

