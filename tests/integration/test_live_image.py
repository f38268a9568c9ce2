"""The live image: built by the real recipe (or reused from the cache), checked inside,
and booted for real: QEMU (TCG) in a network namespace of its own with a bridge, a
tap, dnsmasq for DHCP and an HTTP server for root.squashfs. The test reads the serial
console for VET-READY, pins the host key it names, and runs a tool over SSH with the
key that went in on the kernel command line.

The first build takes minutes (debootstrap); every later run reuses the cache.
Building and booting need root (debootstrap, network namespaces)."""

from __future__ import annotations

import contextlib
import os
import queue
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from harness.console.boot import parse_announce
from harness.errors import VetError
from harness.image import (
    RECIPE_DIR,
    ImageArtifacts,
    apt_mirror,
    build_image,
    check_build_tools,
    encode_ssh_key,
    kernel_cmdline,
    read_packages,
    recipe_hash,
)
from harness.token import token_fingerprint

READY_DEADLINE_S = float(os.environ.get("VET_TEST_READY_DEADLINE_S", "420"))
# What the vetting stages run on the host: each must be in the image.
REQUIRED_PATHS = [
    "usr/sbin/sshd", "usr/bin/stress-ng", "usr/bin/fio", "usr/sbin/smartctl",
    "usr/sbin/nvme", "usr/bin/lshw", "usr/sbin/dmidecode", "usr/bin/lspci", "usr/bin/lsblk",
    "usr/bin/iperf3", "usr/sbin/memtester", "usr/bin/ipmitool", "usr/sbin/ethtool",
    "usr/bin/edac-util", "usr/bin/rx", "usr/bin/sx", "usr/bin/python3", "usr/bin/base64",
    "usr/lib/systemd/systemd", "usr/lib/systemd/systemd-networkd",
    "usr/local/sbin/vet-announce", "usr/local/sbin/vet-sshkey", "usr/local/sbin/vet-hostkeys",
]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="building/booting needs root")


# ----------------------------------------------------------------- no build needed


def test_recipe_hash_covers_every_file_and_the_exec_bit(tmp_path: Path) -> None:
    copy = tmp_path / "live_image"
    shutil.copytree(RECIPE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    base = recipe_hash(RECIPE_DIR)
    assert recipe_hash(copy) == base
    (copy / "initrd" / "extra.txt").write_text("x\n")
    with_extra = recipe_hash(copy)
    assert with_extra != base
    (copy / "initrd" / "extra.txt").chmod(0o755)
    assert recipe_hash(copy) not in (base, with_extra)
    (copy / "initrd" / "extra.txt").unlink()
    assert recipe_hash(copy) == base
    with (copy / "packages.txt").open("a") as fh:
        fh.write("hdparm\n")
    assert recipe_hash(copy) != base
    assert "hdparm" in read_packages(copy)


def test_mirror_comes_from_apt_sources_one_line_and_deb822(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VET_IMAGE_MIRROR", raising=False)
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text(
        "# comment\ndeb-src http://src.example.invalid/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://sec.example.invalid/debian-security "
        "bookworm-security main\n")
    (apt / "sources.list.d" / "off.sources").write_text(
        "Types: deb\nURIs: http://off.example.invalid/debian\nSuites: bookworm\n"
        "Components: main\nEnabled: no\n")
    (apt / "sources.list.d" / "z.sources").write_text(
        "Types: deb\n# snapshot comment\nURIs: http://mirror.example.invalid/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://other.example.invalid/debian\nSuites: trixie\n"
        "Components: main\n")
    assert apt_mirror(apt) == "http://mirror.example.invalid/debian"
    (apt / "sources.list.d" / "a.list").write_text(
        "deb http://list.example.invalid/debian bookworm main contrib\n")
    assert apt_mirror(apt) == "http://list.example.invalid/debian"
    with pytest.raises(VetError, match="no apt source for Debian sid"):
        apt_mirror(apt, suite="sid")
    monkeypatch.setenv("VET_IMAGE_MIRROR", "http://override.example.invalid/debian")
    assert apt_mirror(apt, suite="sid") == "http://override.example.invalid/debian"


def test_missing_build_tools_name_the_apt_packages() -> None:
    with pytest.raises(VetError) as err:
        check_build_tools(which=lambda tool: None if tool in ("debootstrap", "zstd") else tool)
    assert "apt-get install debootstrap zstd" in str(err.value)
    check_build_tools(which=lambda tool: f"/usr/bin/{tool}")


def test_ready_line_and_cmdline_contract() -> None:
    fp = "SHA256:" + "A" * 43
    line = f"VET-READY ip=10.77.0.10 mac=52:54:00:aa:bb:cc run=r-1 hostkey={fp}"
    ready = parse_announce(f"\r{line}\r")
    assert ready is not None
    assert (ready.ip, ready.mac, ready.run_id, ready.hostkey_fingerprint) == (
        "10.77.0.10", "52:54:00:aa:bb:cc", "r-1", fp)
    assert parse_announce(line[:-3]) is None  # half a fingerprint is not a line
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBv0 vet controller"
    cmdline = kernel_cmdline("http://10.77.0.1:8080/root.squashfs", run_id="r-1",
                             token="t0k", ssh_public_key=key)
    words = cmdline.split()
    assert "loglevel=4" in words and "vet.token=t0k" in words and "vet.run=r-1" in words
    encoded = encode_ssh_key(key)
    assert f"vet.sshkey={encoded}" in words
    assert not set(encoded) & set("+/= ")
    with pytest.raises(VetError):
        encode_ssh_key("command=\"x\" ssh-ed25519 AAAA")


# ----------------------------------------------------------------- the built image


@pytest.fixture(scope="module")
def image() -> ImageArtifacts:
    if os.geteuid() != 0:
        pytest.skip("building the live image needs root")
    return build_image(progress=lambda msg: print(msg, file=sys.stderr))


def test_artifacts_exist_and_manifest_describes_them(image: ImageArtifacts) -> None:
    manifest = image.read_manifest()
    assert manifest["recipe_hash"] == image.recipe_hash == recipe_hash()
    for path, name in ((image.vmlinuz, "vmlinuz"), (image.initrd, "initrd.img"),
                       (image.squashfs, "root.squashfs")):
        assert path.is_file() and path.stat().st_size == manifest["artifacts"][name]["bytes"]
    assert image.initrd.stat().st_size < 8 << 20, "the initrd should stay small"
    assert manifest["packages"]["openssh-server"]
    assert set(read_packages()) <= set(manifest["packages"])


def _unsquash_list(image: ImageArtifacts) -> set[str]:
    out = subprocess.run(["unsquashfs", "-lc", "-d", "", str(image.squashfs)],
                         capture_output=True, text=True, check=True).stdout
    return {line.strip().lstrip("/") for line in out.splitlines() if line.strip()}


def test_squashfs_has_the_tools_and_no_secrets(image: ImageArtifacts, tmp_path: Path) -> None:
    paths = _unsquash_list(image)
    missing = [p for p in REQUIRED_PATHS if p not in paths]
    assert not missing, f"missing from root.squashfs: {missing}"
    host_keys = [p for p in paths if p.startswith("etc/ssh/ssh_host_")]
    assert not host_keys, f"the image ships SSH host keys: {host_keys}"
    assert "root/.ssh/authorized_keys" not in paths
    extract = tmp_path / "x"
    subprocess.run(["unsquashfs", "-q", "-d", str(extract), str(image.squashfs),
                    "etc/shadow", "etc/machine-id", "etc/resolv.conf"],
                   check=True, capture_output=True)
    root_entry = next(line for line in (extract / "etc/shadow").read_text().splitlines()
                      if line.startswith("root:"))
    # "*": no password can match; the serial console logs root in by itself (agetty
    # --autologin: console access is physical access), SSH takes keys only.
    assert root_entry.split(":")[1] in ("*", "!", "!*"), "root has a password hash"
    assert (extract / "etc/machine-id").read_text() == "", "machine-id would be shared"
    assert (extract / "etc/resolv.conf").read_text() == ""


def test_second_build_is_a_cache_hit(image: ImageArtifacts) -> None:
    started = time.monotonic()
    again = build_image(progress=lambda _msg: None)
    elapsed = time.monotonic() - started
    assert again.cached and again.directory == image.directory
    assert elapsed < 1.0, f"a cached build took {elapsed:.2f} s"


def test_output_dir_gets_the_artifacts(image: ImageArtifacts, tmp_path: Path) -> None:
    out = build_image(tmp_path / "out", progress=lambda _msg: None)
    assert out.directory == tmp_path / "out"
    assert out.squashfs.stat().st_size == image.squashfs.stat().st_size
    assert out.read_manifest()["recipe_hash"] == image.recipe_hash


# ----------------------------------------------------------------- a real boot


class Console:
    """Reads a QEMU serial console (its stdout) on a thread: every byte to a log file,
    complete lines to a queue the test waits on with deadlines (no sleeping)."""

    def __init__(self, stream: IO[bytes], log: Path) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.log = log
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        tail = b""
        with open(self.log, "ab") as log:
            while chunk := os.read(stream.fileno(), 65536):
                log.write(chunk)
                log.flush()
                *complete, tail = (tail + chunk).split(b"\n")
                for raw in complete:
                    self.lines.put(raw.decode("utf-8", "replace").strip("\r"))
        self.lines.put(None)

    def poll_for(self, match: Callable[[str], bool], deadline: float) -> str | None:
        """The first line (from now) that matches, or None at the deadline / console end."""
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                return None
            if line is None:
                self.lines.put(None)  # stays ended for later waits
                return None
            self.seen.append(line)
            if match(line):
                return line
        return None

    def wait_for(self, what: str, match: Callable[[str], bool], deadline: float) -> str:
        line = self.poll_for(match, deadline)
        if line is None:
            last = "\n".join(self.seen[-25:])
            raise AssertionError(f"waited for {what}: console ended or deadline passed. "
                                 f"Last console lines:\n{last}")
        return line


class NetnsLab:
    """A network namespace with a bridge, a tap and the processes serving it; close()
    stops them all and removes the namespace, and reports anything left behind."""

    def __init__(self, subnet: int) -> None:
        self.name = f"vet-t-{secrets.token_hex(3)}"
        self.bridge_ip = f"10.77.{subnet}.1"
        self.net = f"10.77.{subnet}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.created = False

    def ns(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def sh(self, *argv: str) -> str:
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    def up(self) -> None:
        self.sh("ip", "netns", "add", self.name)
        self.created = True
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "br0", "type", "bridge"],
                    ["ip", "addr", "add", f"{self.bridge_ip}/24", "dev", "br0"],
                    ["ip", "link", "set", "br0", "up"],
                    ["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
                    ["ip", "link", "set", "tap0", "master", "br0", "up"]):
            self.sh(*self.ns(*cmd))

    def spawn(self, argv: list[str], log: Path | None,
              stdin: int | None = None) -> subprocess.Popen[bytes]:
        """Start argv inside the namespace: output to `log`, or to a pipe when None."""
        with contextlib.ExitStack() as stack:
            out: IO[bytes] | int = (stack.enter_context(open(log, "wb")) if log
                                    else subprocess.PIPE)
            proc = subprocess.Popen(self.ns(*argv), stdin=stdin, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def close(self) -> list[str]:
        left: list[str] = []
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            if proc.poll() is None:
                left.append(f"process {proc.pid} ({proc.args!r})")
        if self.created:
            pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
                left.append(f"stray process {pid} in {self.name}")
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
            if self.name in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                           text=True).stdout.split():
                left.append(f"network namespace {self.name}")
        return left


@contextlib.contextmanager
def netns_lab() -> Iterator[NetnsLab]:
    lab = NetnsLab(random.randint(100, 250))
    left: list[str] = []
    try:
        lab.up()
        yield lab
    finally:
        left = lab.close()
    assert not left, f"left behind: {left}"


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"the boot test needs {missing}: apt-get install qemu-system-x86 "
                    "dnsmasq-base openssh-client iproute2")


@needs_root
@pytest.mark.lab
def test_boot_announces_ready_and_accepts_the_controller_key(image: ImageArtifacts,
                                                             tmp_path: Path) -> None:
    _need("qemu-system-x86_64", "dnsmasq", "ssh", "ssh-keyscan", "ssh-keygen", "ip")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vet-test",
                    "-f", str(key)], check=True)
    run_id = f"t-{secrets.token_hex(4)}"
    token = secrets.token_hex(16)
    mac = "52:54:00:" + ":".join(f"{b:02x}" for b in random.randbytes(3))

    with netns_lab() as lab:
        guest_ip = f"{lab.net}.10"
        lab.spawn(["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
                   "--interface=br0", "--bind-interfaces", "--except-interface=lo",
                   f"--dhcp-range={lab.net}.100,{lab.net}.200,255.255.255.0,1h",
                   f"--dhcp-host={mac},{guest_ip},vetguest", "--dhcp-ignore=tag:!known",
                   "--dhcp-option=3", "--dhcp-option=6", "--log-facility=-", "--log-dhcp",
                   f"--dhcp-leasefile={tmp_path / 'leases'}", "--pid-file="],
                  tmp_path / "dnsmasq.log")
        lab.spawn([sys.executable, "-m", "http.server", "8080", "--bind", lab.bridge_ip,
                   "--directory", str(image.directory)], tmp_path / "http.log")
        cmdline = kernel_cmdline(f"http://{lab.bridge_ip}:8080/root.squashfs", run_id=run_id,
                                 token=token, ssh_public_key=key.with_suffix(".pub").read_text())
        started = time.monotonic()
        # One vCPU: this test needs none more, and on a loaded machine a two-vCPU TCG guest
        # once hung for good in the kernel's crypto self-tests (a soft lockup of CPU#1 for
        # 400 s before userspace), a hang of the emulator's SMP, not of the image.
        qemu = lab.spawn(
            ["qemu-system-x86_64", "-accel", "tcg,tb-size=64", "-cpu", "qemu64", "-m", "512",
             "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-monitor", "none",
             "-serial", "stdio", "-no-reboot",
             "-kernel", str(image.vmlinuz), "-initrd", str(image.initrd), "-append", cmdline,
             "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
             "-device", f"virtio-net-pci,netdev=n0,mac={mac}"],
            None, stdin=subprocess.PIPE)
        assert qemu.stdout is not None and qemu.stdin is not None
        console = Console(qemu.stdout, tmp_path / "console.log")
        deadline = started + READY_DEADLINE_S

        console.wait_for("the initrd's switch_root", lambda s: "switching to the root" in s,
                         deadline)
        switched = time.monotonic() - started
        line = console.wait_for("VET-READY", lambda s: parse_announce(s) is not None,
                                deadline)
        ready_s = time.monotonic() - started
        ready = parse_announce(line)
        assert ready is not None
        assert (ready.ip, ready.mac, ready.run_id) == (guest_ip, mac, run_id)
        assert ready.token_fingerprint == token_fingerprint(token)

        # Pin the host key VET-READY named: keyscan what sshd serves, compare fingerprints.
        known = tmp_path / "known_hosts"
        scan = subprocess.run(lab.ns("ssh-keyscan", "-T", "20", "-t", "ed25519", ready.ip),
                              capture_output=True, text=True, timeout=60)
        known.write_text(scan.stdout)
        fingerprint = subprocess.run(["ssh-keygen", "-lf", str(known)], capture_output=True,
                                     text=True, check=True).stdout.split()[1]
        assert fingerprint == ready.hostkey_fingerprint

        def ssh(command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                lab.ns("ssh", "-F", "/dev/null", "-i", str(key), "-o", "BatchMode=yes",
                       "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
                       "-o", "ConnectTimeout=30", f"root@{ready.ip}", command),
                capture_output=True, text=True, timeout=120)

        result = ssh("stress-ng --version")
        first_ssh_s = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert "stress-ng, version" in result.stdout
        state = ssh("systemctl list-units --failed --plain --no-legend; echo ==; "
                    "ls /etc/ssh | grep host_; echo ==; free -m | sed -n 2p; echo ==; "
                    "cat /proc/cmdline; echo ==; cat /root/.ssh/authorized_keys")
        failed, keys, mem, proc_cmdline, authorized = state.stdout.split("==\n")
        assert failed.strip() == "", f"failed units: {failed}"
        assert keys.split() == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
        # The token is there for the controller's safety gates to read over SSH...
        assert f"vet.token={token}" in proc_cmdline.split()
        assert authorized.strip() == key.with_suffix(".pub").read_text().strip()

        # The serial console is a root shell (agetty --autologin): type into it. Typing
        # before the getty has opened the port is lost, so ask again until answered.
        typed_deadline = time.monotonic() + 60
        answered = None
        while answered is None and time.monotonic() < typed_deadline:
            qemu.stdin.write(b"echo vet-console-$((6*7))\n")
            qemu.stdin.flush()
            answered = console.poll_for(lambda s: s.endswith("vet-console-42"),
                                        min(time.monotonic() + 10, typed_deadline))
        assert answered, "no root shell answered on the serial console"

        # ...and never on the serial console (whoever watches the console sees it all).
        log = (tmp_path / "console.log").read_text(errors="replace")
        assert token not in log, "the run token was echoed on the serial console"
        print(f"\nboot: switch_root {switched:.0f} s, VET-READY {ready_s:.0f} s, first SSH "
              f"{first_ssh_s:.0f} s; guest memory (total used free ...): {mem.split()[1:4]}",
              file=sys.stderr)
