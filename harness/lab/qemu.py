"""QEMU command lines for lab guests, their disks, and which accelerator really works.

Guests start paused (-S) and daemonised: QEMU's parent exits once the serial socket,
the QMP sockets and the tap exist, which is the lab's ready event; the guest stays
"powered off" until a power driver continues it. `graphics=off` makes SeaBIOS and iPXE
print on the serial port without -nographic (which -daemonize does not allow).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

from harness.lab.daemon import LabError
from harness.lab.smbios import psu_file
from harness.lab.spec import DiskSpec, GuestSpec, LabSpec

QEMU = "qemu-system-x86_64"
#: Measured on nested paravirtual KVM hosts: qemu64 under TCG boots faster than max.
TCG_ACCEL = ["-accel", "tcg,tb-size=64", "-cpu", "qemu64"]
KVM_ACCEL = ["-accel", "kvm", "-cpu", "host"]
#: What a working accelerator shows on the serial console within the probe's deadline.
PROBE_SIGN = b"iPXE initialising devices"
PROBE_DEADLINE_S = 15.0


def disk_path(lab: LabSpec, guest: GuestSpec, index: int) -> Path:
    return lab.guest_dir(guest.name) / f"disk{index}.raw"


def blkdebug_path(lab: LabSpec, guest: GuestSpec, index: int) -> Path:
    return lab.guest_dir(guest.name) / f"disk{index}.blkdebug"


def blkdebug_config(disk: DiskSpec) -> str:
    """blkdebug rules that fail the disk's requests at the given sectors."""
    rules = []
    for rule in disk.io_errors:
        rules.append(f'[inject-error]\nevent = "{rule.event}"\nerrno = "{rule.errno}"\n'
                     f'sector = "{rule.sector}"\n')
    return "\n".join(rules)


def make_disks(lab: LabSpec, guest: GuestSpec) -> None:
    """Sparse raw images (blkdebug needs raw: qcow2 skips the event for unwritten areas)."""
    for index, disk in enumerate(guest.disks):
        path = disk_path(lab, guest, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            fh.truncate(int(disk.size_gib * 2**30))
        if disk.io_errors:
            blkdebug_path(lab, guest, index).write_text(blkdebug_config(disk))


def _disk_args(lab: LabSpec, guest: GuestSpec) -> list[str]:
    args: list[str] = []
    sata_port = 0
    scsi = False
    for index, disk in enumerate(guest.disks):
        image = disk_path(lab, guest, index)
        drive = f"if=none,id=d{index},format=raw,cache=unsafe,"
        if disk.io_errors:
            drive += (f"file.driver=blkdebug,file.config={blkdebug_path(lab, guest, index)},"
                      f"file.image.filename={image}")
        else:
            drive += f"file={image}"
        args += ["-drive", drive]
        model = f",model={disk.model}" if disk.model else ""
        if disk.bus == "nvme":
            args += ["-device", f"nvme,id=nvme{index},drive=d{index},serial={disk.serial}"]
        elif disk.bus == "sata":
            args += ["-device", f"ide-hd,drive=d{index},bus=ide.{sata_port},"
                                f"serial={disk.serial}{model}"]
            sata_port += 1
        elif disk.bus == "scsi":
            if not scsi:
                args += ["-device", "virtio-scsi-pci,id=scsi0"]
                scsi = True
            args += ["-device", f"scsi-hd,drive=d{index},bus=scsi0.0,serial={disk.serial}"]
        else:
            args += ["-device", f"virtio-blk-pci,drive=d{index},serial={disk.serial}"]
    return args


def qmp_users(guest: GuestSpec) -> list[str]:
    """Who gets a QMP socket: the lab itself, and the guest's power path."""
    users = ["lab"]
    users.append({"qemu": "power", "ipmi": "ipmi", "redfish": "redfish"}[guest.power.driver])
    return users


def guest_argv(lab: LabSpec, guest: GuestSpec, index: int, accel: str) -> list[str]:
    """The QEMU command line of one guest (paused, daemonised, console on loopback TCP)."""
    gdir = lab.guest_dir(guest.name)
    argv = [QEMU, "-name", f"{guest.name},process=vet-lab-{guest.name}",
            "-machine", "q35,graphics=off",
            *(KVM_ACCEL if accel == "kvm" else TCG_ACCEL),
            "-m", str(guest.memory_mib), "-smp", str(guest.cpus),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-daemonize", "-pidfile", str(gdir / "qemu.pid"), "-S", "-no-shutdown",
            "-msg", "timestamp=on",
            "-chardev", f"socket,id=ser0,host=127.0.0.1,port={guest.console_port},"
                        "server=on,wait=off,nodelay=on",
            "-serial", "chardev:ser0"]
    for user in qmp_users(guest):
        argv += ["-qmp", f"unix:{lab.qmp_socket(guest, user)},server=on,wait=off"]
    argv += ["-netdev", f"tap,id=n0,ifname={lab.tap(index)},script=no,downscript=no",
             "-device", f"virtio-net-pci,netdev=n0,mac={guest.mac},bootindex=1"]
    if guest.smbios:
        argv += ["-smbios", "type=1," + ",".join(f"{k}={v}" for k, v in
                                                 sorted(guest.smbios.items()))]
    for bay in range(1, len(guest.psus) + 1):  # type 39 records, see harness.lab.smbios
        argv += ["-smbios", f"file={psu_file(gdir, bay)}"]
    return argv + _disk_args(lab, guest)


def check_tools() -> None:
    missing = [tool for tool in (QEMU, "dnsmasq", "ip") if shutil.which(tool) is None]
    if missing:
        raise LabError(f"the lab needs {', '.join(missing)}: apt-get install qemu-system-x86 "
                       "dnsmasq-base iproute2")


def _probe_kvm() -> tuple[bool, str]:
    """Boot an empty guest under KVM for a few seconds: does the firmware get to iPXE?

    /dev/kvm existing is not enough: a nested paravirtual KVM aborts on `-cpu host` or
    stalls in the option ROM. Only a guest that really runs proves it.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not usable"
    argv = [QEMU, "-machine", "q35,graphics=off", *KVM_ACCEL, "-m", "64", "-nodefaults",
            "-no-user-config", "-display", "none", "-serial", "stdio", "-monitor", "none",
            "-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0",
            "-boot", "n"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + PROBE_DEADLINE_S
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([proc.stdout], [], [], remaining)
            if not readable:
                break
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            if PROBE_SIGN in seen:
                return True, "a KVM guest reached iPXE"
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip().splitlines()
            return False, f"KVM guest failed: {err[-1] if err else 'exited'}"
        return False, (f"a KVM guest did not reach iPXE within {PROBE_DEADLINE_S:g} s "
                       "(nested or paravirtual KVM that cannot run ordinary guests)")
    finally:
        proc.kill()
        proc.wait(timeout=10)


def choose_accel(wanted: str, cache_dir: Path) -> tuple[str, str]:
    """(accel, why): KVM only where it really runs a guest, else TCG. The probe's verdict
    is cached per kernel and QEMU binary, so `vet lab up` pays for it once."""
    if wanted == "tcg":
        return "tcg", "vet_lab.accel is tcg"
    qemu = shutil.which(QEMU) or QEMU
    key = f"{os.uname().release}|{qemu}|{os.stat(qemu).st_mtime_ns if os.path.exists(qemu) else 0}"
    cache = cache_dir / "accel.json"
    try:
        cached = json.loads(cache.read_text())
    except (OSError, ValueError):
        cached = {}
    if cached.get("key") == key:
        works, why = bool(cached["kvm"]), str(cached["why"]) + " (cached probe)"
    else:
        works, why = _probe_kvm()
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "kvm": works, "why": why}))
    if works:
        return "kvm", why
    if wanted == "kvm":
        raise LabError(f"vet_lab.accel is kvm but KVM cannot run guests here: {why}; "
                       "set vet_lab.accel: auto or tcg")
    return "tcg", f"TCG, because {why}"
