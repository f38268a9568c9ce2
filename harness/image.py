"""The live image hosts PXE-boot into for vetting: build it, cache it, describe it.

The recipe is everything under live_image/ (package list, shell steps, initrd init,
files for the root); this module runs the steps, shows progress, and keeps each
result under a cache directory named after a hash of the recipe, so a build happens
once per recipe and every later call returns the cached artifacts at once:

    vmlinuz        the Debian kernel
    initrd.img     busybox initrd: DHCP, fetch root.squashfs over HTTP, switch_root
    root.squashfs  the live root (systemd, sshd, the vetting tools), zstd
    manifest.json  recipe hash, package versions, sizes, build time

It also owns the two ends of the image's contract with the controller: the kernel
command line (`kernel_cmdline`) and the VET-READY line the host prints on its serial
console once SSH is up (parsed by `harness.console.boot.parse_announce`).
docs/LIVE-IMAGE.md describes both.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from harness.errors import VetError

RECIPE_DIR = Path(__file__).resolve().parent.parent / "live_image"
SUITE = "bookworm"
ARCH = "amd64"
# Bump when this module changes what a build produces (its steps live in the recipe).
FORMAT = 1
MANIFEST = "manifest.json"
ARTIFACTS = ("vmlinuz", "initrd.img", "root.squashfs")
# command -> the Debian package that provides it
BUILD_TOOLS = {
    "debootstrap": "debootstrap",
    "mksquashfs": "squashfs-tools",
    "zstd": "zstd",
    "cpio": "cpio",
    "chroot": "coreutils",
    "mknod": "coreutils",
    "awk": "mawk",
}
HEARTBEAT_S = 15.0

Progress = Callable[[str], object]


@dataclass(frozen=True)
class ImageArtifacts:
    """Where one built image lies; `cached` says it was reused, not built now."""

    directory: Path
    vmlinuz: Path
    initrd: Path
    squashfs: Path
    manifest: Path
    recipe_hash: str
    cached: bool

    @classmethod
    def in_dir(cls, directory: Path, recipe_hash: str, cached: bool) -> ImageArtifacts:
        return cls(directory, directory / "vmlinuz", directory / "initrd.img",
                   directory / "root.squashfs", directory / MANIFEST, recipe_hash, cached)

    def read_manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.manifest.read_text())
        return data


# --------------------------------------------------------------------------- recipe


def read_packages(recipe_dir: Path = RECIPE_DIR) -> list[str]:
    """The package list (packages.txt: one per line, `#` comments), sorted, unique."""
    path = recipe_dir / "packages.txt"
    try:
        text = path.read_text()
    except OSError as exc:
        raise VetError(f"the live image recipe has no package list: {path}: {exc}") from exc
    packages = set()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", line):
            raise VetError(f"{path}: {line!r} is not a Debian package name")
        packages.add(line)
    if not packages:
        raise VetError(f"{path} lists no packages")
    return sorted(packages)


def _recipe_files(recipe_dir: Path) -> list[Path]:
    # Documentation (*.md) does not change the image: editing it must not cost a rebuild.
    files = [p for p in recipe_dir.rglob("*")
             if (p.is_file() or p.is_symlink()) and p.suffix not in (".md", ".pyc")
             and "__pycache__" not in p.parts]
    return sorted(files, key=lambda p: p.relative_to(recipe_dir).as_posix())


def recipe_hash(recipe_dir: Path = RECIPE_DIR) -> str:
    """A hash of every file under the recipe (name, exec bit, content; not the *.md
    documentation) and the package list: the cache key."""
    if not recipe_dir.is_dir():
        raise VetError(f"live image recipe not found: {recipe_dir} is not a directory")
    digest = hashlib.sha256(f"vet-live-image format={FORMAT} {SUITE} {ARCH}\n".encode())
    for path in _recipe_files(recipe_dir):
        rel = path.relative_to(recipe_dir).as_posix()
        if path.is_symlink():
            kind, data = "l", os.readlink(path).encode()
        else:
            kind, data = ("x" if os.access(path, os.X_OK) else "f"), path.read_bytes()
        digest.update(f"{kind} {rel} {len(data)}\n".encode())
        digest.update(data)
    digest.update(("packages " + ",".join(read_packages(recipe_dir)) + "\n").encode())
    return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    """$VET_CACHE_DIR/images, else ~/.cache/vet/images ($XDG_CACHE_HOME honoured)."""
    if os.environ.get("VET_CACHE_DIR"):
        return Path(os.environ["VET_CACHE_DIR"]) / "images"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "vet" / "images"


# --------------------------------------------------------------------------- mirror


@dataclass(frozen=True)
class AptSource:
    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]


def _one_line_sources(text: str) -> Iterator[AptSource]:
    # deb [opt=val ...] URI SUITE COMPONENT...
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] not in ("deb", "deb-src"):
            continue
        rest = words[1:]
        if rest and rest[0].startswith("["):
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) >= 2:
            yield AptSource((words[0],), (rest[0],), (rest[1],), tuple(rest[2:]))


def _deb822_sources(text: str) -> Iterator[AptSource]:
    # Paragraphs of "Field: value" (continuation lines start with a space), blank-separated.
    paragraphs: list[dict[str, str]] = [{}]
    field = ""
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if paragraphs[-1]:
                paragraphs.append({})
            continue
        if raw[0] in " \t" and field:
            paragraphs[-1][field] += " " + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if sep:
            field = name.strip().lower()
            paragraphs[-1][field] = value.strip()
    for p in paragraphs:
        if p.get("enabled", "yes").lower() == "no":
            continue
        yield AptSource(tuple(p.get("types", "").split()), tuple(p.get("uris", "").split()),
                        tuple(p.get("suites", "").split()),
                        tuple(p.get("components", "").split()))


def apt_sources(apt_dir: Path = Path("/etc/apt")) -> list[AptSource]:
    """The machine's apt sources: sources.list, sources.list.d/*.list and *.sources."""
    found: list[AptSource] = []
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        if path.is_file():
            found.extend(_one_line_sources(path.read_text(errors="replace")))
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        found.extend(_deb822_sources(path.read_text(errors="replace")))
    return found


def apt_mirror(apt_dir: Path = Path("/etc/apt"), suite: str = SUITE) -> str:
    """The Debian mirror this machine's apt already uses for `suite` main, so the build
    goes wherever apt is allowed to go. $VET_IMAGE_MIRROR overrides it."""
    override = os.environ.get("VET_IMAGE_MIRROR")
    if override:
        return override
    for source in apt_sources(apt_dir):
        if "deb" in source.types and suite in source.suites and "main" in source.components:
            for uri in source.uris:
                if uri.split(":", 1)[0] in ("http", "https", "file"):
                    return uri
    raise VetError(
        f"no apt source for Debian {suite} main in {apt_dir}/sources.list or "
        f"{apt_dir}/sources.list.d/: the live image is built from the mirror apt uses. "
        f"Add one, or set VET_IMAGE_MIRROR=<Debian mirror URL>")


# --------------------------------------------------------------------------- contract


def encode_ssh_key(public_key: str) -> str:
    """One OpenSSH public key line as the kernel command line carries it (base64url,
    no padding: no spaces, nothing the kernel or a shell would split)."""
    line = public_key.strip()
    if "\n" in line or not re.match(r"(ssh-ed25519|ecdsa-sha2-nistp\d+|ssh-rsa) AAAA", line):
        raise VetError("expected one OpenSSH public key line (ssh-ed25519 AAAA... comment)")
    return base64.urlsafe_b64encode(line.encode()).decode().rstrip("=")


def kernel_cmdline(root_url: str, *, run_id: str, token: str, ssh_public_key: str,
                   console: str = "ttyS0,115200", extra: Sequence[str] = ()) -> str:
    """The live image's kernel command line. loglevel=4 keeps the kernel from echoing
    the command line (and with it vet.token) onto the console."""
    for name, value in (("root_url", root_url), ("run_id", run_id), ("token", token)):
        if not value or any(c.isspace() for c in value):
            raise VetError(f"{name} must be non-empty and contain no whitespace")
    return " ".join([f"console={console}", "loglevel=4", f"vet.root={root_url}",
                     f"vet.run={run_id}", f"vet.token={token}",
                     f"vet.sshkey={encode_ssh_key(ssh_public_key)}", *extra])


# --------------------------------------------------------------------------- build


def check_build_tools(which: Callable[[str], str | None] = shutil.which) -> None:
    """Raise VetError naming the apt packages to install when a build tool is missing."""
    missing = sorted({pkg for tool, pkg in BUILD_TOOLS.items() if which(tool) is None})
    if missing:
        raise VetError(
            "building the live image needs " + ", ".join(missing) + ": install with "
            f"`apt-get install {' '.join(missing)}` (as root)")


def _check_can_build() -> None:
    if os.geteuid() != 0:
        raise VetError("building the live image needs root (debootstrap, chroot, mknod): "
                       "run `sudo vet image build`; a cached image needs no root")
    check_build_tools()


def _complete(directory: Path, digest: str) -> ImageArtifacts | None:
    """The artifacts in `directory` if a finished build of `digest` is there: manifest
    present (written last), hash matching, every file the size the manifest says."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        if manifest.get("recipe_hash") != digest:
            return None
        for name in ARTIFACTS:
            if (directory / name).stat().st_size != manifest["artifacts"][name]["bytes"]:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ImageArtifacts.in_dir(directory, digest, cached=True)


@contextlib.contextmanager
def _locked(path: Path, progress: Progress) -> Iterator[None]:
    # One builder per recipe hash; a second one waits, then finds the cache filled.
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"[image] another build of this recipe is running; waiting ({path})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    mounts = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4]
            # mountinfo escapes space, tab, newline and backslash as octal
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), point)
            if point.startswith(prefix):
                mounts.append(point)
    return sorted(mounts, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Remove a build directory; an interrupted debootstrap may have left /proc, /sys
    or /dev/pts mounted inside it, and rmtree must never descend into those."""
    if not path.exists():
        return
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    left = _mounts_under(path)
    if left:
        raise VetError(f"cannot remove {path}: still mounted inside it: {', '.join(left)}")
    shutil.rmtree(path)


def _remove_stale_builds(cache_root: Path, held_digest: str) -> None:
    """Remove leftovers of killed builds: .build-<hash>-* whose lock nobody holds. The
    caller holds the lock of `held_digest`, so that recipe's leftovers are stale too."""
    for tmp in cache_root.glob(".build-*"):
        digest = tmp.name.split("-")[1]
        if digest == held_digest:
            _remove_tree(tmp)
            continue
        with open(cache_root / f"{digest}.lock", "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a build of that recipe is running now
            try:
                _remove_tree(tmp)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


class _Builder:
    """Runs the recipe's steps in a temporary directory, one log for all of them."""

    def __init__(self, recipe: Path, digest: str, work: Path, progress: Progress) -> None:
        self.recipe = recipe
        self.digest = digest
        self.work = work
        self.progress = progress
        self.root = work / "rootfs"
        self.out = work / "out"
        self.out.mkdir()
        self.log = self.out / "build.log"
        self.steps: dict[str, float] = {}

    def step(self, name: str, argv: list[str]) -> None:
        """Run one recipe step: output to the build log, a heartbeat with the elapsed
        time, and on Ctrl-C the whole step stopped (its process group) before the
        caller removes the build directory."""
        self.progress(f"[image] {name} ...")
        started = time.monotonic()
        env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive",
               "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        with open(self.log, "ab") as log:
            log.write(f"\n=== {name}: {' '.join(argv)}\n".encode())
            log.flush()
            # Own session: a signal reaches every process of the step, and the pipe's
            # EOF says when the last of them (debootstrap's dpkg, say) has exited.
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            assert proc.stdout is not None
            try:
                self._drain(proc.stdout, log, name, started, deadline=None)
            except BaseException:
                self.progress(f"[image] {name}: stopping")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                # debootstrap finishes the dpkg call it is in, then cleans up its mounts.
                if not self._drain(proc.stdout, log, name, started,
                                   deadline=time.monotonic() + 120):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            finally:
                proc.stdout.close()
            rc = proc.wait()
        elapsed = time.monotonic() - started
        self.steps[name] = round(elapsed, 1)
        if rc != 0:
            tail = self.log.read_text(errors="replace").splitlines()[-25:]
            raise _StepFailed(name, rc, "\n".join(tail))
        self.progress(f"[image] {name}: done in {elapsed:.1f} s")

    def _drain(self, pipe: IO[bytes], log: IO[bytes], name: str, started: float,
               deadline: float | None) -> bool:
        """Copy the step's output to the log until EOF (True) or the deadline (False),
        saying every HEARTBEAT_S how long the step has been running."""
        fd = pipe.fileno()
        next_beat = time.monotonic() + HEARTBEAT_S
        while True:
            now = time.monotonic()
            if now >= next_beat:
                self.progress(f"[image] {name}: {now - started:.0f} s")
                next_beat = now + HEARTBEAT_S
            if deadline is not None and now >= deadline:
                return False
            wait = next_beat - now if deadline is None else min(next_beat, deadline) - now
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return True
            log.write(chunk)
            log.flush()

    def script(self, name: str) -> str:
        return str(self.recipe / name)

    def run(self, mirror: str, packages: list[str], deb_cache: Path) -> dict[str, Any]:
        started = time.monotonic()
        self.step("debootstrap (download and install packages)",
                  ["sh", self.script("build-rootfs.sh"), str(self.root), mirror, SUITE,
                   ",".join(packages), str(deb_cache)])
        self.step("configure the live root", ["sh", self.script("configure-rootfs.sh"),
                                             str(self.recipe), str(self.root), str(self.out)])
        installed = self._package_versions()
        kernel = next((self.root / "lib" / "modules").iterdir()).name
        self.step("initrd", ["sh", self.script("build-initrd.sh"), str(self.recipe),
                             str(self.root), str(self.out)])
        self.step("squashfs (zstd)", ["sh", self.script("pack-rootfs.sh"), str(self.root),
                                      str(self.out)])
        rootfs_bytes = sum(p.lstat().st_size for p in self.root.rglob("*"))
        return {
            "recipe_hash": self.digest,
            "format": FORMAT,
            "suite": SUITE,
            "arch": ARCH,
            "kernel": kernel,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.monotonic() - started, 1),
            "step_seconds": self.steps,
            "mirror": mirror,
            "requested_packages": packages,
            "packages": installed,
            "rootfs_bytes": rootfs_bytes,
            "artifacts": {name: _describe(self.out / name) for name in ARTIFACTS},
        }

    def _package_versions(self) -> dict[str, str]:
        result = subprocess.run(
            ["chroot", str(self.root), "dpkg-query", "-W", "-f", "${Package}\t${Version}\n"],
            capture_output=True, text=True, check=False, env={**os.environ, "LC_ALL": "C"})
        if result.returncode != 0:
            raise _StepFailed("package versions", result.returncode, result.stderr)
        pairs = (line.split("\t", 1) for line in result.stdout.splitlines() if "\t" in line)
        return dict(sorted((name, version) for name, version in pairs))


class _StepFailed(Exception):
    def __init__(self, step: str, rc: int, tail: str) -> None:
        super().__init__(step)
        self.step, self.rc, self.tail = step, rc, tail


def _describe(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": sha.hexdigest()}


def _deliver(artifacts: ImageArtifacts, output_dir: Path | None) -> ImageArtifacts:
    """Place the artifacts in `output_dir` too (hard links where possible), each file
    replaced atomically, and return their paths there."""
    if output_dir is None:
        return artifacts
    output_dir.mkdir(parents=True, exist_ok=True)
    if output_dir.resolve() == artifacts.directory.resolve():
        return artifacts
    for name in (*ARTIFACTS, MANIFEST):
        src, dst = artifacts.directory / name, output_dir / name
        tmp = output_dir / f".{name}.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    return ImageArtifacts.in_dir(output_dir, artifacts.recipe_hash, artifacts.cached)


def build_image(output_dir: Path | None = None, force: bool = False,
                progress: Progress = print, *, recipe_dir: Path | None = None,
                cache_dir: Path | None = None) -> ImageArtifacts:
    """Build the live image, or return the cached one for this recipe.

    The cache entry is <cache_dir>/<recipe hash>/ (default ~/.cache/vet/images, or
    $VET_CACHE_DIR/images). A build runs in a temporary directory next to it and is
    renamed into place only when complete, so an interrupted build never leaves an
    image that looks finished. `force` rebuilds even when cached. With `output_dir`
    the artifacts are also placed there. Building needs root and debootstrap,
    squashfs-tools, zstd and cpio; reusing the cache needs neither.
    """
    recipe = (recipe_dir or RECIPE_DIR).resolve()
    digest = recipe_hash(recipe)
    cache_root = (cache_dir or default_cache_dir()).resolve()
    final = cache_root / digest
    if not force and (found := _complete(final, digest)) is not None:
        progress(f"[image] recipe {digest}: cached in {final}")
        return _deliver(found, output_dir)

    _check_can_build()
    with _sigterm_as_interrupt():
        return _build_locked(recipe, digest, cache_root, output_dir, force, progress)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a timeout, a service stop) cleans up like Ctrl-C: stop the step, remove
    the half-built directory. Only the main thread can install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _build_locked(recipe: Path, digest: str, cache_root: Path, output_dir: Path | None,
                  force: bool, progress: Progress) -> ImageArtifacts:
    final = cache_root / digest
    packages = read_packages(recipe)
    mirror = apt_mirror()
    cache_root.mkdir(parents=True, exist_ok=True)
    with _locked(cache_root / f"{digest}.lock", progress):
        if not force and (found := _complete(final, digest)) is not None:
            progress(f"[image] recipe {digest}: built meanwhile by another process, {final}")
            return _deliver(found, output_dir)
        _remove_stale_builds(cache_root, digest)
        work = Path(tempfile.mkdtemp(prefix=f".build-{digest}-", dir=cache_root))
        try:
            progress(f"[image] building recipe {digest} ({len(packages)} packages, "
                     f"Debian {SUITE}) in {work}")
            builder = _Builder(recipe, digest, work, progress)
            try:
                manifest = builder.run(mirror, packages, cache_root / "debs")
            except _StepFailed as exc:
                kept = cache_root / f"{digest}.failed.log"
                shutil.copyfile(builder.log, kept)
                raise VetError(
                    f"live image build failed at step '{exc.step}' (exit {exc.rc}); "
                    f"full log: {kept}\n{exc.tail}") from None
            # The manifest is written last: its presence marks a complete build.
            tmp_manifest = builder.out / f"{MANIFEST}.tmp"
            tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
            os.replace(tmp_manifest, builder.out / MANIFEST)
            if final.exists():  # --force: move the old one out of the way, atomically
                os.rename(final, work / "previous")
            os.rename(builder.out, final)
        finally:
            try:
                _remove_tree(work)
            except (OSError, VetError) as exc:  # never hide the build's own outcome
                progress(f"[image] could not remove {work} ({exc}); the next build will")
    sizes = ", ".join(f"{n} {manifest['artifacts'][n]['bytes'] / 2**20:.1f} MiB"
                      for n in ARTIFACTS)
    progress(f"[image] built in {manifest['build_seconds']:.0f} s: {sizes}")
    return _deliver(ImageArtifacts.in_dir(final, digest, cached=False), output_dir)
