"""Host leases, busy/held refusal, hold records, keys and overrides, on a tmp store."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import leases
from harness.errors import InventoryError, VetError
from harness.hold import (
    HoldError,
    find_hold,
    fingerprint,
    hold_lines,
    install_command,
    new_hold_key,
    revoke_command,
    ssh_command,
)
from harness.inventory import load_inventory
from harness.models import Connection as Conn
from harness.models import ExpectedDisk, ExpectedSpec, Host
from harness.overrides import apply_overrides, check_overrides
from harness.states import State
from harness.store import SCHEMA_VERSION, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "vet.sqlite") as s:
        yield s


def _other_lease(controller: str = "", pid: int | None = None, start: str | None = None
                 ) -> dict[str, object]:
    pid = os.getpid() if pid is None else pid
    return {"holder": "alice@rack-ctl", "controller": controller or platform.node(),
            "pid": pid, "pid_start": leases.process_start(pid) if start is None else start}


def _hold(store: Store, run_id: str, host: str, *, opened: float, ttl_s: float = 3600) -> int:
    store.start_run(run_id, "quick", "inv")
    store.transition(run_id, host, State.QUEUED)
    store.transition(run_id, host, State.FAILED, "spec: memory")
    store.transition(run_id, host, State.HOLDING)
    return store.add_hold(run_id, host, stage="spec", reason="expected 64 GiB, found 0.5",
                          opened_at=opened, expires_at=opened + ttl_s, opened_by="bob@ctl",
                          ssh_command="ssh -i /k root@10.0.0.9", key_via="ssh")


def test_schema_has_the_lease_and_override_tables(store: Store) -> None:
    assert store.schema_version == SCHEMA_VERSION >= 2
    assert store.leases() == [] and store.overrides() == [] and store.open_holds() == []


def test_a_run_leases_its_hosts_and_gives_them_back(store: Store) -> None:
    leases.acquire(store, "r1", ["a", "b"])
    rows = store.leases()
    assert [(r["host"], r["run_id"], r["pid"]) for r in rows] == [
        ("a", "r1", os.getpid()), ("b", "r1", os.getpid())]
    assert rows[0]["holder"] == leases.holder()
    leases.acquire(store, "r1", ["a"])  # the same run again (another worker): fine
    leases.release(store, "r1")
    assert store.leases() == []


def test_a_host_busy_in_a_live_run_is_refused_with_who_and_since(store: Store) -> None:
    # The other run's controller is alive: this very process stands in for it.
    assert store.acquire_leases("r1", ["a"], _other_lease(), leases.is_stale) == []
    with pytest.raises(leases.HostBusy) as refused:
        leases.acquire(store, "r2", ["b", "a"])
    text = str(refused.value)
    assert "host a is busy in run r1 of alice@rack-ctl" in text
    assert time.strftime("%Y-%m-%d", time.gmtime()) in text and "UTC" in text
    assert "--hosts" in text
    # All or nothing: b, free, was not taken either.
    assert [r["host"] for r in store.leases()] == ["a"]


def test_stale_leases_of_dead_controllers_here_are_reclaimed(store: Store) -> None:
    # Same pid, another start time: the pid was reused, the controller is gone.
    store.acquire_leases("r1", ["a"], _other_lease(start="1"), leases.is_stale)
    leases.acquire(store, "r2", ["a"])
    assert [r["run_id"] for r in store.leases()] == ["r2"]


def test_leases_of_other_controllers_are_never_taken_over(store: Store) -> None:
    store.acquire_leases("r1", ["a"], _other_lease(controller="elsewhere", start="1"),
                         leases.is_stale)
    with pytest.raises(leases.HostBusy, match="busy in run r1"):
        leases.acquire(store, "r2", ["a"])


def test_process_start_tells_live_from_gone() -> None:
    assert leases.process_start(os.getpid()) != ""
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert leases.process_start(pid_max + 1) == ""


def test_a_held_host_is_refused_until_released(store: Store) -> None:
    opened = time.time() - 60
    hold_id = _hold(store, "r0", "node07", opened=opened)
    with pytest.raises(leases.HostBusy) as refused:
        leases.acquire(store, "r1", ["node07"])
    text = str(refused.value)
    assert "host node07 is held for a human by bob@ctl (run r0) since" in text
    assert "vet release node07" in text and "vet retry node07" in text
    assert "expired" not in text
    _hold(store, "r5", "node08", opened=time.time() - 7200)  # its hour is over
    with pytest.raises(leases.HostBusy, match=r"\(expired: `vet janitor` releases it\)"):
        leases.acquire(store, "r1", ["node08"])
    leases.acquire(store, "r1", ["node07"], attach_held=True)  # what vet retry does
    leases.release(store, "r1")
    store.close_hold(hold_id, "carol", "done")
    leases.acquire(store, "r2", ["node07"])
    assert store.open_holds("node07") == []
    [row] = store.query("SELECT * FROM holds WHERE host = 'node07'")
    assert row["released_by"] == "carol" and row["release_note"] == "done"


def test_find_hold_names_the_held_hosts(store: Store) -> None:
    _hold(store, "r0", "node07", opened=time.time())
    assert find_hold(store, "node07")["host"] == "node07"
    with pytest.raises(HoldError, match=r"node03 is not held .* held hosts: node07"):
        find_hold(store, "node03")


def test_hold_lines_show_host_expiry_and_way_in(store: Store) -> None:
    _hold(store, "r0", "node07", opened=time.time())
    lines = hold_lines(store, "r0")
    assert lines[0].startswith("held")
    assert "node07" in lines[1] and "ssh -i /k root@10.0.0.9" in lines[1] and "(spec)" in lines[1]
    assert hold_lines(store, "another-run") == []


def test_a_hold_key_is_fresh_private_and_outside_reports(tmp_path: Path) -> None:
    first = new_hold_key("r1", "node07", tmp_path / "holds")
    second = new_hold_key("r1", "node07", tmp_path / "holds")
    assert first.private == tmp_path / "holds" / "r1" / "node07" / "id_ed25519"
    assert second.private.stat().st_mode & 0o777 == 0o600
    assert first.private.parent.stat().st_mode & 0o777 == 0o700
    assert first.public_line != second.public_line, "a key pair was reused"
    assert second.public_line.startswith("ssh-ed25519 AAAA")
    assert second.public_line.endswith("vet-hold-r1-node07")
    assert "PRIVATE" not in second.public_line


def test_hold_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setenv("VET_HOLD_DIR", str(tmp_path / "elsewhere"))
    key = new_hold_key("r9", "n1")
    assert key.private.is_relative_to(tmp_path / "elsewhere")


def test_ssh_command_pins_the_host_key_file(tmp_path: Path) -> None:
    key = new_hold_key("r1", "n1", tmp_path)
    command = ssh_command(key, "root", "10.0.0.9", 22, pinned=True)
    assert command == (f"ssh -i {key.private} -o IdentitiesOnly=yes -o "
                       f"UserKnownHostsFile={key.known_hosts} root@10.0.0.9")
    other = ssh_command(key, "admin", "10.0.0.9", 2222, pinned=False)
    assert "StrictHostKeyChecking=accept-new" in other and "-p 2222 admin@10.0.0.9" in other


def test_fingerprint_is_openssh_sha256() -> None:
    # ssh-keygen -lf of this public key prints this fingerprint.
    line = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINtkcRvlRCYlpgCyLGgtvUHgiCXL4jubfPqHShm/lPKH "
            "x")
    assert fingerprint(line) == "SHA256:lwp1Zxaf08FBU5hrmoevaVV3VoGM4ivx8gFYier8t0k"
    assert fingerprint("garbage") is None and fingerprint("ssh-ed25519 !!!") is None


def test_key_commands_quote_the_key_and_check_the_result() -> None:
    line = "ssh-ed25519 AAAAkey vet-hold-r1-n1"
    install = install_command(line)
    assert "'ssh-ed25519 AAAAkey vet-hold-r1-n1'" in install
    assert install.endswith("grep -qF 'ssh-ed25519 AAAAkey' ~/.ssh/authorized_keys")
    revoke = revoke_command(line)
    assert "grep -vF 'ssh-ed25519 AAAAkey'" in revoke
    assert revoke.endswith("! grep -qsF 'ssh-ed25519 AAAAkey' $f")


def test_wipe_probe_override_allows_every_expected_disk() -> None:
    host = Host("n1", Conn("ssh"), spec=ExpectedSpec(disks=(ExpectedDisk("S1"),
                                                           ExpectedDisk("S2"))))
    params = {"storage": {"wipe_probe_override": ["S0"], "mode": "destructive"}}
    applied = apply_overrides(host, params, ["wipe-probe"])
    assert applied["storage"]["wipe_probe_override"] == ["S0", "S1", "S2"]
    assert params["storage"]["wipe_probe_override"] == ["S0"], "the input was changed"
    assert apply_overrides(host, params, []) is params
    check_overrides(["wipe-probe"])
    with pytest.raises(VetError, match=r"--override wipe-probes: not an override .* wipe-probe"):
        check_overrides(["wipe-probes"])


def _inventory(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    n1:\n      ansible_connection: local\n"
                    f"      {extra}\n")
    return path


def test_hold_policy_comes_from_the_inventory(tmp_path: Path) -> None:
    [host] = load_inventory(_inventory(tmp_path, "vet_hold_ttl_h: 48"))
    assert host.hold.ttl_h == 48 and host.hold.power_off is True
    [host] = load_inventory(_inventory(tmp_path, "vet_release_power_off: false"))
    assert host.hold.ttl_h == 24 and host.hold.power_off is False


@pytest.mark.parametrize(("extra", "message"), [
    ("vet_hold_ttl_h: soon", "vet_hold_ttl_h 'soon' is not a number; write e.g. "
                             "vet_hold_ttl_h: 48"),
    ("vet_hold_ttl_h: 0", "vet_hold_ttl_h 0 is out of range"),
    ("vet_release_power_off: maybe", "vet_release_power_off 'maybe' is not true/false"),
    ("vet_hold_ttl: 3", "vet_hold_ttl is not a vet variable"),
])
def test_bad_hold_policy_is_named_with_the_fix(tmp_path: Path, extra: str, message: str
                                               ) -> None:
    with pytest.raises(InventoryError) as bad:
        load_inventory(_inventory(tmp_path, extra))
    assert message in str(bad.value)
