"""harness.provision with real ansible-runner, ansible-playbook, dnsmasq and busybox's
DHCP/TFTP clients (in network namespaces the tests create); files live in tmp_path."""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from harness import provision
from harness.models import Connection, Host, PxeConfig
from harness.provision import (
    ProvisionError,
    provision_host,
    pxe_server_vars,
    release_host,
    run_playbook,
    script_path,
    setup_pxe_server,
)
from harness.token import make_token, token_fingerprint
from tests.helpers import gone

IPXE = Path("/usr/lib/ipxe")
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFFDc56omxLs53/YdWJx3qJO3aCMYnCBUsp9KlQp+F5p vet"
NODE01 = Host(name="node01", connection=Connection("ssh", "10.77.0.21"),
              macs=("52:54:00:ab:01:01",))
NODE02 = Host(name="node02", connection=Connection("ssh", "node02.example"),
              macs=("52:54:00:ab:01:02", "52:54:00:ab:02:02"))
LOCAL = Host(name="controller", connection=Connection("local"))
UNKNOWN_MAC = "52:54:00:ab:09:09"

pytestmark = pytest.mark.skipif(shutil.which("dnsmasq") is None or not IPXE.is_dir(),
                                reason="needs dnsmasq-base and ipxe (make system)")


def pxe_config(root: Path, **changes: Any) -> PxeConfig:
    base = PxeConfig(server="10.77.0.1", interface="br-vet",
                     dhcp_range=("10.77.0.100", "10.77.0.200"), root=str(root), mode="lab")
    return replace(base, **changes)


def fake_image(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for name, size in (("vmlinuz", 3000), ("initrd.img", 2000), ("root.squashfs", 9000)):
        (directory / name).write_bytes(os.urandom(size))
    return directory


def command_lines() -> Iterator[tuple[int, str]]:
    """(pid, command line) of every process, as `ps` would show them."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue


class Watch:
    """Collects every event given to on_event and checks, while ansible-playbook still
    runs, that no secret is on any process's command line (what `ps` shows)."""

    def __init__(self, *secrets: str) -> None:
        self.secrets = [s for s in secrets if s]
        self.events: list[dict[str, Any]] = []
        self.seen_in_ps: list[str] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        for _, cmdline in command_lines():
            self.seen_in_ps += [s for s in self.secrets if s in cmdline]

    def assert_clean(self) -> None:
        assert self.events, "on_event was never called"
        text = json.dumps(self.events)
        for secret in self.secrets:
            assert secret not in text
        assert not self.seen_in_ps


@pytest.fixture
def runner_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make tempfile use a directory of our own, to see what the runner leaves behind."""
    directory = tmp_path / "tempdir"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


# --------------------------------------------------------------------------- pxe_server.yml


@dataclass
class Rendered:
    root: Path
    image: Path
    pxe: PxeConfig
    watch: Watch
    leftovers: list[str]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    base = tmp_path_factory.mktemp("pxe")
    image = fake_image(base / "image")
    pxe = pxe_config(base / "root")
    watch = Watch("k" * 32)
    with pytest.MonkeyPatch.context() as patch:
        (base / "tempdir").mkdir()
        patch.setattr(tempfile, "tempdir", str(base / "tempdir"))
        setup_pxe_server(pxe, [NODE01, NODE02, LOCAL], image, on_event=watch)
        leftovers = os.listdir(base / "tempdir")
    return Rendered(base / "root", image, pxe, watch, leftovers)


def test_pxe_server_renders_a_config_dnsmasq_accepts(rendered: Rendered) -> None:
    conf = rendered.root / "dnsmasq.conf"
    check = subprocess.run(["dnsmasq", "--test", "-C", str(conf)], capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    assert "syntax check OK" in check.stderr
    lines = [line for line in conf.read_text().splitlines() if not line.startswith("#")]
    assert [line for line in lines if line.startswith("dhcp-host=")] == [
        "dhcp-host=52:54:00:ab:01:01,10.77.0.21,node01",
        "dhcp-host=52:54:00:ab:01:02,52:54:00:ab:02:02,node02",
    ]
    root = rendered.root
    for wanted in ("port=0", "interface=br-vet", "bind-interfaces",
                   "dhcp-range=10.77.0.100,10.77.0.200,255.255.255.0,12h",
                   "dhcp-ignore=tag:!known", "dhcp-option=3", "dhcp-option=6",
                   "dhcp-match=set:ipxe,175", "dhcp-boot=tag:ipxe,boot.ipxe",
                   "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe",
                   "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi", "enable-tftp",
                   f"tftp-root={root}/tftp", "enable-ra", "dhcp-range=fd77::,ra-only,64",
                   "ra-param=br-vet,10,0", f"dhcp-leasefile={root}/dnsmasq.leases",
                   f"pid-file={root}/dnsmasq.pid", "log-dhcp",
                   f"log-facility={root}/dnsmasq.log", "user=root"):
        assert wanted in lines
    for name in ("undionly.kpxe", "ipxe.efi"):
        assert (root / "tftp" / name).read_bytes() == (IPXE / name).read_bytes()
    boot = (root / "tftp" / "boot.ipxe").read_text()
    assert boot.startswith("#!ipxe\n")
    assert "chain http://10.77.0.1:8080/hosts/${net0/mac:hexhyp}.ipxe || goto none" in boot
    for name in ("vmlinuz", "initrd.img", "root.squashfs"):  # hard links: same inode
        assert (root / "http" / name).stat().st_ino == (rendered.image / name).stat().st_ino
    assert (root / "http" / "hosts").is_dir()
    assert rendered.leftovers == []
    rendered.watch.assert_clean()
    tasks = [e for e in rendered.watch.events if e["event"] == "runner_on_ok"]
    assert {"Write dnsmasq.conf (MAC allowlist, TFTP, iPXE chain)"} <= {e["task"] for e in tasks}
    assert rendered.watch.events[-1] == {"event": "playbook_on_stats", "status": "ok",
                                         "changed": True}


def test_a_failing_task_is_named(tmp_path: Path, runner_tmp: Path) -> None:
    watch = Watch()
    missing = tmp_path / "no-image"
    with pytest.raises(ProvisionError) as exc:
        setup_pxe_server(pxe_config(tmp_path / "root"), [NODE01], missing, on_event=watch)
    assert str(exc.value) == (
        "playbook pxe_server.yml failed at task 'Check that the live image is complete': "
        f"the live image directory {missing} lacks vmlinuz, initrd.img, root.squashfs: build "
        "the image with `vet image build` and pass its directory")
    failed = [e for e in watch.events if e.get("status") == "failed"]
    assert failed[0]["event"] == "runner_on_failed"
    assert failed[0]["task"] == "Check that the live image is complete"
    assert os.listdir(runner_tmp) == []
    assert not (tmp_path / "root").exists()  # it stopped before writing anything


def test_service_mode_units(tmp_path: Path, runner_tmp: Path) -> None:
    """Service mode as far as a machine without a running systemd lets it go: the units
    are rendered (and pass `systemd-analyze verify`); starting them is not exercised."""
    root, units = tmp_path / "root", tmp_path / "units"
    units.mkdir()
    pxe = pxe_config(root, mode="service", http_port=8089, ipv6_ra=False)
    extravars = {**pxe_server_vars(pxe, [NODE01], fake_image(tmp_path / "image")),
                 "vet_systemd_dir": str(units)}
    watch = Watch()
    if Path("/run/systemd/system").is_dir():  # a real systemd: do not touch its services
        run_playbook("pxe_server.yml", extravars, on_event=watch, skip_tags=["services"])
    else:
        with pytest.raises(ProvisionError) as exc:
            run_playbook("pxe_server.yml", extravars, on_event=watch)
        assert str(exc.value).startswith(
            "playbook pxe_server.yml failed at task 'Start (or restart after a change) the vet "
            "PXE services': ")
        assert "systemd" in str(exc.value)
    dnsmasq_unit = (units / "vet-pxe-dnsmasq.service").read_text()
    http_unit = (units / "vet-pxe-http.service").read_text()
    assert f"ExecStart=/usr/sbin/dnsmasq -k -C {root}/dnsmasq.conf\n" in dnsmasq_unit
    assert (f"ExecStart=/usr/bin/python3 -m http.server --bind 10.77.0.1 --directory "
            f"{root}/http 8089\n") in http_unit
    conf = (root / "dnsmasq.conf").read_text()
    assert "user=root" not in conf and "enable-ra" not in conf
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", *map(str, units.iterdir())],
                                capture_output=True, text=True, timeout=60)
        assert verify.returncode == 0, verify.stderr
    assert os.listdir(runner_tmp) == []


# --------------------------------------------------------------------------- provision/release


def test_provision_replace_and_release(tmp_path: Path, runner_tmp: Path) -> None:
    root = tmp_path / "root"
    (root / "http" / "hosts").mkdir(parents=True)
    pxe = pxe_config(root)
    key = os.urandom(32)
    tokens = [make_token(key, run_id=run, host="node01", mac=NODE01.macs[0],
                         expires_at=int(time.time()) + 3600) for run in ("run-1", "run-2")]
    script = root / "http" / "hosts" / "52-54-00-ab-01-01.ipxe"
    assert script_path(pxe, NODE01) == script

    for run, token in zip(("run-1", "run-2"), tokens, strict=True):
        watch = Watch(token, token.split(".")[-1])
        path = provision_host(pxe, NODE01, run_id=run, token=token, ssh_public_key=SSH_KEY,
                              on_event=watch)
        assert path == script
        assert stat.S_IMODE(script.stat().st_mode) == 0o640
        lines = script.read_text().splitlines()
        assert lines[0] == "#!ipxe"
        assert lines[1] == f"# vet run {run} for node01 (token {token_fingerprint(token)})"
        assert re.fullmatch(
            r"kernel http://10\.77\.0\.1:8080/vmlinuz initrd=initrd\.img console=ttyS0,115200 "
            rf"loglevel=4 vet\.root=http://10\.77\.0\.1:8080/root\.squashfs vet\.run={run} "
            rf"vet\.token={re.escape(token)} vet\.sshkey=[A-Za-z0-9_-]+", lines[2]), lines[2]
        assert lines[3:] == ["initrd http://10.77.0.1:8080/initrd.img",
                                "echo vet-ipxe: starting the kernel", "boot"]
        watch.assert_clean()
        assert os.listdir(runner_tmp) == []
    assert tokens[0] not in script.read_text()  # the second run replaced the first

    watch = Watch(*tokens)
    release_host(pxe, NODE01, on_event=watch)
    released = script.read_text()
    assert released.startswith("#!ipxe\n")
    assert released.rstrip().endswith("\nexit")
    assert "kernel" not in released and "run-2" not in released
    watch.assert_clean()
    assert os.listdir(runner_tmp) == []
    # The token was written to the script only: nowhere else under tmp_path, nor in
    # Ansible's home (the runner points it into its own temporary directory).
    places = [tmp_path, Path.home() / ".ansible"]
    for place in places:
        for path in (p for p in place.rglob("*") if p.is_file() and not p.is_symlink()):
            data = path.read_bytes()
            assert not any(t.encode() in data for t in tokens), path


def test_provision_needs_a_set_up_server(tmp_path: Path, runner_tmp: Path) -> None:
    token = make_token(b"k" * 32, run_id="r", host="node01", mac=NODE01.macs[0],
                       expires_at=int(time.time()) + 60)
    watch = Watch(token)
    with pytest.raises(ProvisionError) as exc:
        provision_host(pxe_config(tmp_path / "nothing"), NODE01, run_id="r", token=token,
                       ssh_public_key=SSH_KEY, on_event=watch)
    assert str(exc.value) == (
        "playbook provision.yml failed at task 'Check that the PXE server is set up': "
        f"{tmp_path}/nothing/http/hosts does not exist: set the PXE server up first "
        "(pxe_server.yml, harness.provision.setup_pxe_server)")
    assert token not in str(exc.value)
    watch.assert_clean()
    assert os.listdir(runner_tmp) == []


def test_bad_arguments_are_refused_before_ansible_runs(tmp_path: Path) -> None:
    pxe = pxe_config(tmp_path)
    with pytest.raises(ProvisionError, match="host controller has no MAC address"):
        release_host(pxe, LOCAL, on_event=print)
    with pytest.raises(ProvisionError, match="run id 'a b' cannot go on a kernel command line"):
        provision_host(pxe, NODE01, run_id="a b", token="t", ssh_public_key=SSH_KEY,
                       on_event=print)
    with pytest.raises(ProvisionError, match="the run token is not one harness\\.token made"):
        provision_host(pxe, NODE01, run_id="r", token="{{ lookup('env', 'HOME') }}",
                       ssh_public_key=SSH_KEY, on_event=print)


def test_what_a_stopped_play_started_is_stopped_too(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Ansible's workers call setsid(), out of the process group the runner kills at the
    deadline: a task's command used to run on after the error."""
    fifo, tag = tmp_path / "started", str(600 + secrets.randbelow(10**6))
    os.mkfifo(fifo)
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "hang.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        f"    - shell: echo started > {fifo}; exec sleep {tag}\n")
    monkeypatch.setattr(provision, "PLAYBOOKS", tmp_path / "books")
    with ThreadPoolExecutor(1) as pool:
        play = pool.submit(provision.run_playbook, "hang.yml", {}, on_event=Watch(),
                           timeout_s=45)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            assert select.select([reader], [], [], 45)[0], "the task never started"
            assert os.read(reader, 100) == b"started\n"
        finally:
            os.close(reader)
        # the shell, or the sleep it became (the same pid: exec)
        sleeping = [pid for pid, line in command_lines()
                    if f"sleep {tag}" in line or line == f"sleep\0{tag}\0"]
        assert sleeping, "the task's command is not running"
        with pytest.raises(ProvisionError, match="did not finish within 45 s"):
            play.result(timeout=120)
    assert all(gone(pid) for pid in sleeping)


def test_a_play_past_its_deadline_is_stopped(tmp_path: Path, runner_tmp: Path) -> None:
    (tmp_path / "http" / "hosts").mkdir(parents=True)
    with pytest.raises(ProvisionError) as exc:
        release_host(pxe_config(tmp_path), NODE01, on_event=Watch(), timeout_s=1)
    assert str(exc.value).startswith("playbook release.yml did not finish within 1 s and "
                                     "was stopped")
    assert os.listdir(runner_tmp) == []
    assert all(gone(pid) for pid, line in command_lines() if str(runner_tmp) in line)


def test_a_broken_event_sink_stops_the_play(tmp_path: Path, runner_tmp: Path) -> None:
    (tmp_path / "http" / "hosts").mkdir(parents=True)

    def sink(event: dict[str, Any]) -> None:
        raise OSError("event log closed")

    with pytest.raises(OSError, match="event log closed"):
        release_host(pxe_config(tmp_path), NODE01, on_event=sink)
    assert os.listdir(runner_tmp) == []
    assert all(gone(pid) for pid, line in command_lines() if str(runner_tmp) in line)


# --------------------------------------------------------------------------- dnsmasq for real


class FifoLog:
    """dnsmasq's log-facility as a FIFO: wait for a line with a deadline, no polling."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        # Our own writer keeps the FIFO from reading as EOF before dnsmasq opens it.
        self.writer = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self.text = ""

    def wait_for(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while not (match := re.search(pattern, self.text)):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.reader], [], [], remaining)[0]:
                tail = "\n".join(self.text.splitlines()[-8:])
                raise AssertionError(f"dnsmasq logged no {pattern!r} in {timeout} s:\n{tail}")
            self.text += os.read(self.reader, 65536).decode(errors="replace")
        return match.group(0)

    def close(self) -> None:
        os.close(self.writer)
        os.close(self.reader)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    """A server namespace (bridge br-vet 10.77.0.1/24) and a client namespace whose veth
    v1 is plugged into that bridge; both are deleted afterwards."""
    if os.geteuid() != 0 or shutil.which("busybox") is None:
        pytest.skip("needs root (network namespaces) and busybox (udhcpc, tftp)")
    suffix = uuid.uuid4().hex[:8]
    server, client = f"vet-pxe-s-{suffix}", f"vet-pxe-c-{suffix}"
    made: list[str] = []
    try:
        for name in (server, client):
            ip("netns", "add", name)
            made.append(name)
        ip("-n", server, "link", "add", "br-vet", "type", "bridge")
        ip("-n", server, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
           "netns", client)
        ip("-n", server, "link", "set", "v0", "master", "br-vet")
        ip("-n", server, "addr", "add", "10.77.0.1/24", "dev", "br-vet")
        for link in ("v0", "br-vet", "lo"):
            ip("-n", server, "link", "set", link, "up")
        yield server, client
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                timeout=20).stdout
        assert not any(name in listed for name in made)


def dhcp(client: str, mac: str, script: Path, *options: str, tries: int = 3,
         pause_s: int = 1) -> subprocess.CompletedProcess[str]:
    """One DHCP exchange by busybox udhcpc from `mac` (`tries` DISCOVERs, `pause_s` apart:
    its own deadline); the script prints what it got."""
    ip("-n", client, "link", "set", "v1", "down")
    ip("-n", client, "link", "set", "v1", "address", mac)
    ip("-n", client, "link", "set", "v1", "up")
    extra = [arg for option in options for arg in ("-x", option)]
    return subprocess.run(["ip", "netns", "exec", client, "busybox", "udhcpc", "-f", "-q", "-n",
                           "-i", "v1", "-t", str(tries), "-T", str(pause_s), "-s", str(script),
                           *extra],
                          capture_output=True, text=True, timeout=30)


def test_rendered_dnsmasq_serves_only_listed_macs(rendered: Rendered, tmp_path: Path,
                                                  namespaces: tuple[str, str]) -> None:
    server, client = namespaces
    root = rendered.root
    for stale in ("dnsmasq.log", "dnsmasq.leases", "dnsmasq.pid"):
        (root / stale).unlink(missing_ok=True)
    log = FifoLog(root / "dnsmasq.log")
    dnsmasq = subprocess.Popen(["ip", "netns", "exec", server, "dnsmasq",
                                "--keep-in-foreground", "-C", str(root / "dnsmasq.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        log.wait_for(r"DHCP, IP range 10\.77\.0\.100 -- 10\.77\.0\.200")
        log.wait_for(rf"TFTP root is {re.escape(str(root))}/tftp")
        log.wait_for(r"router advertisement on fd77::")
        script = tmp_path / "udhcpc.sh"
        script.write_text('#!/bin/sh\necho "$1 ip=$ip boot_file=$boot_file siaddr=$siaddr"\n')
        script.chmod(0o755)

        # A plain PXE ROM, iPXE (option 175) and x86-64 UEFI (client-arch 7) each get
        # the file for them; node01 gets its fixed address.
        for options, boot_file in (((), "undionly.kpxe"), (("0xaf:0101",), "boot.ipxe"),
                                   (("0x5d:0007",), "ipxe.efi")):
            got = dhcp(client, NODE01.macs[0], script, *options)
            assert got.returncode == 0, got.stderr
            assert f"bound ip=10.77.0.21 boot_file={boot_file} siaddr=10.77.0.1" in got.stdout

        # node02's second MAC is allowlisted too; without a fixed address it gets one
        # from the range (after dnsmasq's ~3 s ping check that the address is free).
        got = dhcp(client, NODE02.macs[1], script, tries=5, pause_s=2)
        assert got.returncode == 0, got.stderr
        assert re.search(r"bound ip=10\.77\.0\.(1\d\d|200) boot_file=undionly.kpxe", got.stdout)

        # TFTP serves boot.ipxe as rendered.
        ip("-n", client, "addr", "add", "10.77.0.21/24", "dev", "v1")
        fetched = tmp_path / "boot.ipxe"
        tftp = subprocess.run(["ip", "netns", "exec", client, "busybox", "tftp", "-g", "-r",
                               "boot.ipxe", "-l", str(fetched), "10.77.0.1"],
                              capture_output=True, text=True, timeout=30)
        assert tftp.returncode == 0, tftp.stderr
        assert fetched.read_bytes() == (root / "tftp" / "boot.ipxe").read_bytes()
        ip("-n", client, "addr", "flush", "dev", "v1")

        # A MAC that is not in the inventory gets nothing.
        got = dhcp(client, UNKNOWN_MAC, script, tries=2)
        assert got.returncode != 0
        assert "bound" not in got.stdout
        log.wait_for(rf"DHCPDISCOVER\(br-vet\) {UNKNOWN_MAC} ignored")
        assert dnsmasq.poll() is None
    finally:
        dnsmasq.terminate()
        try:
            _, errors = dnsmasq.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            dnsmasq.kill()
            _, errors = dnsmasq.communicate(timeout=20)
        log.close()
    assert gone(dnsmasq.pid)
    assert "FAILED" not in errors


def test_vet_pxe_setup_command(tmp_path: Path, runner_tmp: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """`vet pxe setup` renders the server for the inventory's PXE hosts."""
    from harness.cli import main

    inventory = tmp_path / "inv"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        "all:\n  hosts:\n    node01:\n      ansible_host: 10.77.0.11\n"
        "      vet_macs: ['52:54:00:aa:00:01']\n    local:\n      ansible_connection: local\n")
    (inventory / "group_vars" / "all.yml").write_text(
        "vet_pxe:\n  server: 10.77.0.1\n  interface: br-test\n"
        "  dhcp_range: '10.77.0.100,10.77.0.200'\n"
        f"  root: {tmp_path / 'root'}\n  mode: lab\n")
    image = fake_image(tmp_path / "image")
    assert main(["pxe", "setup", "--inventory", str(inventory), "--image-dir", str(image)]) == 0
    out = capsys.readouterr().out
    assert "PXE server (lab) for 1 host(s) on br-test" in out
    conf = (tmp_path / "root" / "dnsmasq.conf").read_text()
    assert "dhcp-host=52:54:00:aa:00:01,10.77.0.11,node01" in conf
    assert main(["pxe", "setup", "--inventory", str(tmp_path / "nowhere"),
                 "--image-dir", str(image)]) == 2
