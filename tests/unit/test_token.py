"""harness.token: run tokens, their keys and the kernel command line parser."""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.models import PxeConfig
from harness.token import (
    TokenError,
    cmdline_values,
    default_key_path,
    key_for,
    load_key,
    load_or_create_key,
    make_token,
    token_fingerprint,
    verify_token,
)

KEY = b"0123456789abcdef0123456789abcdef"
MAC = "52:54:00:ab:01:02"
EXPIRES = 2_000_000_000  # 2033-05-18 03:33:20 UTC
T = TypeVar("T")
FIELDS = {"run_id": "run-20261122", "host": "node01", "mac": MAC}

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1,
                max_size=30)
macs = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(
    lambda octets: ":".join(f"{o:02x}" for o in [octets[0] & 0xFE, *octets[1:]]))
keys = st.binary(min_size=1, max_size=64)


def check_secret_free(exc: pytest.ExceptionInfo[TokenError], *secrets: str | bytes) -> str:
    text = str(exc.value)
    for secret in secrets:
        shown = secret.decode() if isinstance(secret, bytes) else secret
        assert shown not in text
    return text


# --------------------------------------------------------------------------- tokens


def test_token_verifies_and_is_safe_on_a_kernel_command_line() -> None:
    token = make_token(KEY, expires_at=EXPIRES, **FIELDS)
    assert re.fullmatch(r"v1\.2000000000\.[A-Za-z0-9_-]{43}", token)
    assert token.isascii() and "=" not in token and " " not in token
    verify_token(KEY, token, now=EXPIRES - 1, **FIELDS)
    assert cmdline_values(f"quiet vet.token={token} vet.run=r")["vet.token"] == token


def test_mac_is_compared_normalised() -> None:
    token = make_token(KEY, run_id="r", host="h", mac="52-54-00-AB-01-02", expires_at=EXPIRES)
    verify_token(KEY, token, run_id="r", host="h", mac=MAC, now=0)


@given(key=keys, run_id=names, host=names, mac=macs, expires=st.integers(1, 10**11),
       field=st.sampled_from(["key", "run_id", "host", "mac", "expires"]), data=st.data())
def test_any_change_to_any_field_fails(key: bytes, run_id: str, host: str, mac: str,
                                       expires: int, field: str, data: st.DataObject) -> None:
    token = make_token(key, run_id=run_id, host=host, mac=mac, expires_at=expires)

    def other(strategy: st.SearchStrategy[T], value: T, name: str) -> T:
        return data.draw(strategy.filter(lambda v: v != value)) if field == name else value

    new_key, new_run, new_host, new_mac = (other(keys, key, "key"), other(names, run_id, "run_id"),
                                           other(names, host, "host"), other(macs, mac, "mac"))
    if field == "expires":  # the expiry lives in the token: rewrite it there
        new_expiry = data.draw(st.integers(1, 10**11).filter(lambda v: v != expires))
        token = re.sub(r"^v1\.\d+\.", f"v1.{new_expiry}.", token)
    with pytest.raises(TokenError) as exc:
        verify_token(new_key, token, run_id=new_run, host=new_host, mac=new_mac, now=0)
    text = check_secret_free(exc, token)
    assert "signed for another run, host or MAC, or with another key" in text
    assert "cannot tell which" in text


@given(position=st.integers(0, 200), replacement=st.characters(codec="ascii"),
       action=st.sampled_from(["replace", "insert", "delete"]))
def test_any_edit_of_the_token_text_fails(position: int, replacement: str, action: str) -> None:
    token = make_token(KEY, expires_at=EXPIRES, **FIELDS)
    index = position % len(token)
    if action == "replace":
        edited = token[:index] + replacement + token[index + 1:]
    elif action == "insert":
        edited = token[:index] + replacement + token[index:]
    else:
        edited = token[:index] + token[index + 1:]
    if edited == token:
        return
    with pytest.raises(TokenError) as exc:
        verify_token(KEY, edited, now=0, **FIELDS)
    check_secret_free(exc, token, edited, KEY)


def test_expiry() -> None:
    token = make_token(KEY, expires_at=EXPIRES, **FIELDS)
    verify_token(KEY, token, now=EXPIRES - 0.5, **FIELDS)
    for now in (EXPIRES, EXPIRES + 86400):
        with pytest.raises(TokenError) as exc:
            verify_token(KEY, token, now=now, **FIELDS)
        text = check_secret_free(exc, token, KEY)
        assert "expired at 2033-05-18 03:33:20 UTC" in text
        assert "node01" in text


def test_a_forged_token_is_not_reported_as_merely_expired() -> None:
    token = make_token(b"another key, same length......!", expires_at=100, **FIELDS)
    with pytest.raises(TokenError, match="another run, host or MAC, or with another key"):
        verify_token(KEY, token, now=EXPIRES, **FIELDS)


@pytest.mark.parametrize("bad", [
    "", "v1", "v2.2000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "v1.02000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "v1.-5.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "v1.5.AAAA",
    "v1.5.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "v1.5.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA AAAA",
])
def test_malformed_tokens(bad: str) -> None:
    with pytest.raises(TokenError) as exc:
        verify_token(KEY, bad, now=0, **FIELDS)
    text = str(exc.value)
    assert "malformed" in text
    if len(bad) > 4:
        assert bad not in text


@pytest.mark.parametrize(("change", "message"), [
    ({"mac": "not-a-mac"}, "is not a MAC address"),
    ({"run_id": ""}, "needs a run id and a host name"),
    ({"host": ""}, "needs a run id and a host name"),
])
def test_bad_fields(change: dict[str, str], message: str) -> None:
    with pytest.raises(TokenError, match=message):
        make_token(KEY, expires_at=EXPIRES, **{**FIELDS, **change})


def test_bad_expiry_and_empty_key() -> None:
    with pytest.raises(TokenError, match="unix seconds"):
        make_token(KEY, expires_at=-1, **FIELDS)
    with pytest.raises(TokenError, match="unix seconds"):
        make_token(KEY, expires_at=True, **FIELDS)
    with pytest.raises(TokenError, match="key is empty"):
        make_token(b"", expires_at=EXPIRES, **FIELDS)


def test_fingerprint() -> None:
    token = make_token(KEY, expires_at=EXPIRES, **FIELDS)
    print_ = token_fingerprint(token)
    assert re.fullmatch(r"[0-9a-f]{12}", print_)
    assert print_ == token_fingerprint(token)
    assert print_ not in token
    assert print_ != token_fingerprint(make_token(KEY, expires_at=EXPIRES + 1, **FIELDS))


# --------------------------------------------------------------------------- command line


def test_cmdline_values() -> None:
    line = ('BOOT_IMAGE=/vmlinuz console=ttyS0,115200 loglevel=4 quiet '
            'vet.root=http://10.77.0.1:8080/root.squashfs vet.run=r1 vet.token=v1.5.abc_-x '
            'opt="a b=c" loglevel=7 -- init-arg=1\n')
    assert cmdline_values(line) == {
        "BOOT_IMAGE": "/vmlinuz", "console": "ttyS0,115200", "loglevel": "7", "quiet": "",
        "vet.root": "http://10.77.0.1:8080/root.squashfs", "vet.run": "r1",
        "vet.token": "v1.5.abc_-x", "opt": "a b=c",
    }
    assert cmdline_values("") == {}
    assert cmdline_values("a='x y'") == {"a": "'x", "y'": ""}  # the kernel's quoting, not sh's


# --------------------------------------------------------------------------- keys


def write_key(path: Path, text: str = "a" * 64 + "\n", mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_load_key(tmp_path: Path) -> None:
    path = write_key(tmp_path / "token.key")
    assert load_key(path) == b"a" * 64


@pytest.mark.parametrize(("mode", "text", "message"), [
    (0o644, "a" * 64, "has mode 0644: others may read it"),
    (0o640, "a" * 64, "has mode 0640"),
    (0o600, "", "is empty"),
    (0o600, "\n  \n", "is empty"),
    (0o600, "short", "holds only 5 bytes"),
])
def test_load_key_refuses(tmp_path: Path, mode: int, text: str, message: str) -> None:
    path = write_key(tmp_path / "token.key", text, mode)
    with pytest.raises(TokenError) as exc:
        load_key(path)
    assert message in str(exc.value)
    assert str(path) in str(exc.value)
    if mode != 0o600:
        assert f"chmod 600 {path}" in str(exc.value)
    if len(text.strip()) > 5:
        assert text.strip() not in str(exc.value)


def test_load_key_missing_symlink_directory(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match=r"does not exist; create it .*chmod 600"):
        load_key(tmp_path / "nope.key")
    target = write_key(tmp_path / "real.key")
    (tmp_path / "link.key").symlink_to(target)
    with pytest.raises(TokenError, match="cannot be opened"):
        load_key(tmp_path / "link.key")
    (tmp_path / "dir.key").mkdir()
    with pytest.raises(TokenError, match="not a regular file"):
        load_key(tmp_path / "dir.key")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_load_key_owned_by_someone_else(tmp_path: Path) -> None:
    path = write_key(tmp_path / "token.key")
    os.chown(path, 65534, -1)
    with pytest.raises(TokenError, match="is owned by uid 65534, not by you"):
        load_key(path)


def test_load_or_create_key(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "token.key"
    key = load_or_create_key(path)
    assert re.fullmatch(rb"[0-9a-f]{64}", key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert load_or_create_key(path) == key
    assert load_key(path) == key
    assert sorted(p.name for p in path.parent.iterdir()) == ["token.key"]


def test_racing_creators_end_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "vet" / "token.key"
    count = 8
    barrier = threading.Barrier(count)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(load_or_create_key(path))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert len(results) == count and len(set(results)) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["token.key"]


def test_default_key_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_key_path() == tmp_path / "xdg" / "vet" / "token.key"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_key_path() == tmp_path / "home" / ".config" / "vet" / "token.key"
    assert load_or_create_key() == load_key(tmp_path / "home" / ".config" / "vet" / "token.key")


def test_key_for_a_pxe_config(tmp_path: Path) -> None:
    base = PxeConfig(server="10.0.0.1", interface="eno2", dhcp_range=("10.0.0.100", "10.0.0.199"))
    vaulted = PxeConfig(**{**base.__dict__, "token_key": "k" * 32})
    assert key_for(vaulted) == b"k" * 32
    assert "k" * 32 not in repr(vaulted)
    with pytest.raises(TokenError, match="token_key is too short") as exc:
        key_for(PxeConfig(**{**base.__dict__, "token_key": "tiny"}))
    assert "tiny" not in str(exc.value)
    from_file = PxeConfig(**{**base.__dict__, "token_key_file": str(tmp_path / "k")})
    assert key_for(from_file) == load_key(tmp_path / "k")
