"""Run vet's PXE playbooks (playbooks/*.yml) through ansible-runner.

Three calls: `setup_pxe_server` (dnsmasq.conf, TFTP and HTTP roots, systemd units in
mode "service"), `provision_host` (one host's boot script for one run, with its
token) and `release_host` (the script that boots the local disk).

Every call gets a fresh private_data_dir that is removed afterwards, because
ansible-runner stores extra vars and artifacts there (DESIGN: known traps). Extra
vars go to ansible-playbook as `-e @file` from that 0700 directory, never as `-e JSON`
on its command line, where `ps` would show the token. Ansible's temporary and home
directories point into it too, so module arguments never land anywhere else.
Callers get one compact dict per runner event (`on_event`) and a ProvisionError
naming the playbook, the failed task and Ansible's message, with secrets cut out.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import VetError
from harness.image import kernel_cmdline
from harness.models import Host, PxeConfig
from harness.processes import exited
from harness.token import token_fingerprint

__all__ = [
    "PLAYBOOKS",
    "ProvisionError",
    "provision_host",
    "pxe_server_vars",
    "release_host",
    "run_playbook",
    "script_path",
    "setup_pxe_server",
]

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
DEFAULT_TIMEOUT_S = 300.0
EventSink = Callable[[dict[str, Any]], object]

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_TOKEN_TEXT = re.compile(r"[A-Za-z0-9._-]{1,200}")
_DNS_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")
_REPORTED = frozenset({
    "playbook_on_task_start", "runner_on_ok", "runner_on_failed", "runner_on_skipped",
    "runner_on_unreachable", "playbook_on_stats", "warning",
})
_MSG_CHARS = 400
_HIDDEN = "<hidden>"


class ProvisionError(VetError):
    """A PXE playbook failed or could not run; says which task and why."""


# --------------------------------------------------------------------------- the runner


def _runner() -> Any:
    try:
        import ansible_runner
    except ImportError:
        raise ProvisionError("ansible-runner is not installed in vet's environment; install "
                             "vet's dependencies: pip install -e . (or `make setup`)") from None
    return ansible_runner


def _ansible_playbook() -> str:
    """ansible-playbook from vet's own environment first (a venv is often not on PATH)."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("ansible-playbook")
    if found is None:
        raise ProvisionError("ansible-playbook not found (neither next to "
                             f"{sys.executable} nor on PATH); install ansible-core in vet's "
                             "environment: pip install -e . (or `make setup`)")
    return found


class _Scrubber:
    """Cuts secrets out of any text that leaves a playbook run."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, _HIDDEN)
        return text


def _failure_message(result: Mapping[str, Any]) -> str:
    """Ansible's message for a failed task; for a loop, the first failed item's."""
    message = result.get("msg")
    for item in result.get("results") or ():
        if isinstance(item, Mapping) and item.get("failed"):
            message = item.get("msg") or message
            break
    if not message and result.get("stderr"):
        message = result["stderr"]
    return str(message or "no message").strip()


def _compact(event: Mapping[str, Any], scrub: _Scrubber) -> dict[str, Any] | None:
    """The few fields of a runner event worth keeping in a host's event stream."""
    name = event.get("event")
    if name not in _REPORTED:
        return None
    data: Mapping[str, Any] = event.get("event_data") or {}
    compact: dict[str, Any] = {"event": name}
    if data.get("task"):
        compact["task"] = scrub(str(data["task"]))
    if data.get("host"):
        compact["host"] = str(data["host"])
    res = data.get("res")
    result: Mapping[str, Any] = res if isinstance(res, Mapping) else {}
    if name == "runner_on_ok":
        compact["status"] = "ok"
        if "censored" not in result:  # no_log hides even whether it changed anything
            compact["changed"] = bool(result.get("changed"))
    elif name == "runner_on_skipped":
        compact["status"] = "skipped"
    elif name in ("runner_on_failed", "runner_on_unreachable"):
        compact["status"] = "failed" if name == "runner_on_failed" else "unreachable"
        compact["ignored"] = bool(data.get("ignore_errors"))
        compact["msg"] = scrub(_failure_message(result))[:_MSG_CHARS]
    elif name == "playbook_on_stats":
        failures = sum((data.get(key) or {}).get("localhost", 0)
                       for key in ("failures", "dark"))
        compact.update(status="failed" if failures else "ok",
                       changed=bool((data.get("changed") or {}).get("localhost")))
    elif name == "warning":
        compact["msg"] = scrub(str(event.get("stdout") or "").strip())[:_MSG_CHARS]
    return compact


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def run_playbook(playbook: str, extravars: Mapping[str, Any], *, on_event: EventSink,
                 secrets: Sequence[str] = (), timeout_s: float = DEFAULT_TIMEOUT_S,
                 skip_tags: Sequence[str] = ()) -> None:
    """Run playbooks/<playbook> on localhost with `extravars`; raise ProvisionError if it
    fails or outlives `timeout_s`. `secrets` are cut out of everything reported."""
    runner = _runner()
    binary = _ansible_playbook()
    path = PLAYBOOKS / playbook
    if not path.is_file():
        raise ProvisionError(f"playbook {path} does not exist; vet's checkout is incomplete")
    scrub = _Scrubber(secrets)
    failures: list[dict[str, Any]] = []
    broken: list[Exception] = []

    def handle(event: dict[str, Any]) -> bool:
        compact = _compact(event, scrub)
        if compact is None or broken:
            return False
        if compact["event"].startswith("runner_on_") and compact["status"] in (
                "failed", "unreachable") and not compact["ignored"]:
            failures.append(compact)
        try:
            on_event(compact)
        except Exception as exc:  # the caller's sink broke: stop the play, raise it after
            broken.append(exc)
        return False  # keep no event files, even in the temporary directory

    with tempfile.TemporaryDirectory(prefix="vet-runner-") as private:
        base = Path(private)
        for sub in ("env", "project", "inventory", "tmp", "home"):
            (base / sub).mkdir(mode=0o700)
        _write_private(base / "env" / "extravars", json.dumps(dict(extravars)))
        _write_private(base / "ansible.cfg", "")
        inventory = {"all": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}
        _write_private(base / "inventory" / "hosts.json", json.dumps(inventory))
        envvars = {
            # Only this run's empty config; everything Ansible writes stays in `private`.
            "ANSIBLE_CONFIG": str(base / "ansible.cfg"),
            "ANSIBLE_HOME": str(base / "home"),
            "ANSIBLE_LOCAL_TEMP": str(base / "tmp"),
            "ANSIBLE_REMOTE_TMP": str(base / "tmp"),
            "ANSIBLE_LOG_PATH": str(base / "ansible.log"),
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_KEEP_REMOTE_FILES": "False",
            "ANSIBLE_DISPLAY_ARGS_TO_STDOUT": "False",
            "ANSIBLE_DEBUG": "False",
            "ANSIBLE_VERBOSITY": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_NOCOLOR": "True",
            # The runner finds ansible-playbook on PATH (its `binary` drops the playbook).
            "PATH": os.pathsep.join([os.path.dirname(binary), os.environ.get("PATH", "")]),
        }
        result = runner.run(
            private_data_dir=private, playbook=str(path), inventory=str(base / "inventory"),
            envvars=envvars, suppress_env_files=True, quiet=True,
            timeout=max(1, int(timeout_s)), event_handler=handle,
            cancel_callback=lambda: bool(broken),
            skip_tags=",".join(skip_tags) or None)
        status, rc = result.status, result.rc
        if status != "successful":
            _kill_strays(private)
        tail = ""
        if status != "successful" and not failures:
            stdout = Path(result.config.artifact_dir) / "stdout"
            text = stdout.read_text(errors="replace") if stdout.is_file() else ""
            lines = [line for line in text.splitlines() if line.strip()]
            tail = scrub(" | ".join(lines[-6:]))[-_MSG_CHARS * 2:]
    if broken:
        raise broken[0]
    if status == "successful":
        return
    if status == "timeout":
        raise ProvisionError(f"playbook {playbook} did not finish within {timeout_s:g} s and "
                             "was stopped; see what blocks it (a hung mount, a full disk)")
    if failures:
        first = failures[0]
        raise ProvisionError(f"playbook {playbook} failed at task {first.get('task')!r}: "
                             f"{first.get('msg')}")
    raise ProvisionError(f"playbook {playbook} failed (ansible-playbook exit status {rc}, "
                         f"runner status {status}): {tail or 'no output'}")


def _kill_strays(private: str, within_s: float = 10.0) -> list[int]:
    """Kill what is left of a stopped or failed playbook run; the pids killed.

    The runner stops a play past its deadline by killing ansible-playbook's process
    group, but Ansible's workers call setsid(): they, and the commands they started, live
    on. Every one of them inherited ANSIBLE_CONFIG pointing into this run's private
    directory, so that is how they are found (/proc/PID/environ); each is killed and
    waited for (a pidfd, no polling), so nothing of the run outlives the error.
    """
    marker = f"ANSIBLE_CONFIG={private}/ansible.cfg".encode()
    killed: list[int] = []
    for _ in range(5):  # again while a sweep found some: one may have forked meanwhile
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) in (os.getpid(), *killed):
                continue
            try:
                environ = Path(entry.path, "environ").read_bytes()
            except OSError:  # gone meanwhile, or not ours
                continue
            if marker in environ.split(b"\0"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)
                    found.append(int(entry.name))
        if not found:
            break
        killed += found
    for pid in killed:
        exited(pid, within_s)
    return killed


# --------------------------------------------------------------------------- PXE calls


def _pxe_vars(pxe: PxeConfig) -> dict[str, Any]:
    """What the playbooks read of a PxeConfig: everything but the token key."""
    return {"server": pxe.server, "interface": pxe.interface,
            "dhcp_range": list(pxe.dhcp_range), "netmask": pxe.netmask,
            "http_port": pxe.http_port, "root": os.path.abspath(pxe.root), "mode": pxe.mode,
            "ipv6_ra": pxe.ipv6_ra}


def _dhcp_entry(host: Host) -> dict[str, Any]:
    ip = None
    with contextlib.suppress(ValueError):  # a DNS name: dnsmasq leases it one from the range
        ip = str(ipaddress.IPv4Address(host.connection.address or ""))
    name = host.name if _DNS_NAME.fullmatch(host.name) else None
    return {"name": host.name, "macs": list(host.macs), "ip": ip, "dhcp_name": name}


def pxe_server_vars(pxe: PxeConfig, hosts: Sequence[Host], image_dir: Path) -> dict[str, Any]:
    """pxe_server.yml's extra vars: the PXE config, one DHCP entry per host with MACs
    (hosts without, like ansible_connection: local, do not boot from the network)."""
    return {"vet_pxe": _pxe_vars(pxe),
            "vet_pxe_hosts": [_dhcp_entry(h) for h in hosts if h.macs],
            "vet_image_dir": str(Path(image_dir).resolve())}


def script_path(pxe: PxeConfig, host: Host) -> Path:
    """Where the host's boot script lies: http/hosts/<first MAC, hyphens>.ipxe, the name
    boot.ipxe asks for (`${net0/mac:hexhyp}`)."""
    if not host.macs:
        raise ProvisionError(f"host {host.name} has no MAC address; list the MAC it boots "
                             "from first in vet_macs")
    return Path(os.path.abspath(pxe.root)) / "http" / "hosts" / (
        host.macs[0].replace(":", "-") + ".ipxe")


def _base_url(pxe: PxeConfig) -> str:
    return f"http://{pxe.server}:{pxe.http_port}"


def setup_pxe_server(pxe: PxeConfig, hosts: Sequence[Host], image_dir: Path, *,
                     on_event: EventSink, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Render the PXE root for `hosts` (MAC allowlist), link the live image from
    `image_dir` and, in mode "service", install and (re)start the systemd units."""
    run_playbook("pxe_server.yml", pxe_server_vars(pxe, hosts, image_dir), on_event=on_event,
                 timeout_s=timeout_s)


def provision_host(pxe: PxeConfig, host: Host, *, run_id: str, token: str,
                   ssh_public_key: str, on_event: EventSink,
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> Path:
    """Write the host's boot script for run `run_id` (replacing any earlier one) and
    return its path. The kernel command line carries the token: the script is 0640."""
    path = script_path(pxe, host)
    if not _RUN_ID.fullmatch(run_id):
        raise ProvisionError(f"run id {run_id!r} cannot go on a kernel command line; use "
                             "letters, digits and . _ : - (like demo-20261122-101500)")
    if not _TOKEN_TEXT.fullmatch(token):  # iPXE expands ${...}, Ansible {{ ... }}
        raise ProvisionError(f"host {host.name}: the run token is not one harness.token made "
                             "(letters, digits and . _ - only); make it with make_token")
    cmdline = kernel_cmdline(f"{_base_url(pxe)}/root.squashfs", run_id=run_id, token=token,
                             ssh_public_key=ssh_public_key)
    extravars = {"vet_pxe": _pxe_vars(pxe), "vet_script": path.name, "vet_host": host.name,
                 "vet_run_id": run_id, "vet_base_url": _base_url(pxe), "vet_cmdline": cmdline,
                 "vet_token_fingerprint": token_fingerprint(token)}
    run_playbook("provision.yml", extravars, on_event=on_event, secrets=(token, cmdline),
                 timeout_s=timeout_s)
    return path


def release_host(pxe: PxeConfig, host: Host, *, on_event: EventSink,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Replace the host's boot script with one that boots its local disk."""
    path = script_path(pxe, host)
    run_playbook("release.yml", {"vet_pxe": _pxe_vars(pxe), "vet_script": path.name,
                                 "vet_host": host.name},
                 on_event=on_event, timeout_s=timeout_s)
