"""Ansible inventory -> typed `Host` records.

The inventory is read with Ansible's own machinery (DataLoader, InventoryManager,
VariableManager, Templar), so everything an operator knows from Ansible works here:
INI and YAML inventories, inventory directories, group_vars/host_vars inheritance,
`--limit`-style patterns, Jinja templates in variables and vaulted values.

On top of that this module checks the `vet_*` variables (docs/INVENTORY.md) and turns
each host into a `harness.models.Host`. Every mistake found is collected and raised
together as one `InventoryError`; each line names the inventory, the host, the
variable and what to write instead. Ansible's own display output is captured, so a
broken inventory never prints warnings or tracebacks of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from harness.errors import InventoryError
from harness.models import (
    Connection,
    ConsoleLogin,
    ExpectedCpu,
    ExpectedDisk,
    ExpectedGpu,
    ExpectedMemory,
    ExpectedNic,
    ExpectedSpec,
    HoldPolicy,
    Host,
    MqttConfig,
    NotifyRoute,
    PowerConfig,
    PxeConfig,
)
from harness.notify import check_routes
from harness.states import STAGES
from harness.wording import did_you_mean, kind_of

__all__ = [
    "CONNECTION_KINDS",
    "POWER_DRIVERS",
    "SECRET_KEYS",
    "STAGES",
    "VET_VARIABLES",
    "PowerDriverRule",
    "check_console_url",
    "load_inventory",
    "normalize_mac",
]

log = logging.getLogger(__name__)


#: Values of `ansible_connection` vet can drive.
CONNECTION_KINDS: tuple[str, ...] = ("local", "ssh")

#: `vet_power` keys whose values are secrets: they go to `PowerConfig.secrets`, never
#: to `params`. A key is secret if it equals one of these or ends in `_<one of these>`
#: (so `kg_key` and `api_token` are secret too).
SECRET_KEYS: frozenset[str] = frozenset({"password", "secret", "token", "key"})

#: Every inventory variable vet reads; any other `vet_*` variable is reported as a typo.
VET_VARIABLES: tuple[str, ...] = (
    "vet_macs", "vet_mac", "vet_console", "vet_console_login", "vet_ssh_host_key",
    "vet_ssh_dead_after_s", "vet_power", "vet_mqtt",
    "vet_spec", "vet_stages", "vet_profiles", "vet_lab", "vet_lab_guest", "vet_notify",
    "vet_pxe", "vet_hold_ttl_h", "vet_release_power_off",
)
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


@dataclasses.dataclass(frozen=True)
class PowerDriverRule:
    """Which `vet_power` keys a driver needs and which it also accepts."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    @property
    def allowed(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)


#: The power drivers vet knows and their parameters (the one table to extend when a
#: driver grows an option). wol's `mac` defaults to the host's first `vet_macs` entry.
POWER_DRIVERS: dict[str, PowerDriverRule] = {
    "ipmi": PowerDriverRule(
        required=("address", "username", "password"),
        optional=("port", "interface", "cipher_suite", "privilege", "kg_key", "timeout_s",
                  "shutdown_timeout_s"),
    ),
    "redfish": PowerDriverRule(
        required=("url", "username", "password"),
        optional=("system_id", "verify_tls", "timeout_s", "ca_file", "shutdown_timeout_s"),
    ),
    "qemu": PowerDriverRule(required=("qmp",), optional=("timeout_s", "shutdown_timeout_s")),
    "wol": PowerDriverRule(required=("mac",), optional=("broadcast", "port", "interface")),
    "manual": PowerDriverRule(optional=("instructions",)),
}

_MAC_EXAMPLE = "52:54:00:ab:01:02"
_CONSOLE_FORMS = (
    "socket://HOST:PORT, rfc2217://HOST:PORT, a device path like /dev/ttyS0 or /dev/ttyUSB0, "
    "or serial:///dev/ttyS1?baud=115200"
)
_SPEC_KEYS = (
    "cpu", "memory", "disks", "nics", "gpus", "psu_count", "bios_version", "bmc_version",
)
_CPU_KEYS = ("model", "sockets", "cores", "threads")
_MEMORY_KEYS = ("total_gib", "tolerance_pct", "dimm_count", "dimm_size_gib")
_DISK_KEYS = ("serial", "model", "size_gb")
_NIC_KEYS = ("mac", "speed_mbps")
_GPU_KEYS = ("model", "count")
_PXE_KEYS = (
    "server", "interface", "dhcp_range", "netmask", "http_port", "root", "mode", "ipv6_ra",
    "token_key_file", "token_key", "token_ttl_s",
)
_PXE_REQUIRED = ("server", "interface", "dhcp_range")
_PXE_MODES = ("service", "lab")
_PXE_EXAMPLE = ("vet_pxe: {server: 10.0.0.1, interface: eno2, "
                "dhcp_range: '10.0.0.100,10.0.0.199'}")
_MQTT_KEYS = (
    "host", "port", "username", "password", "topic_prefix", "tls", "ca_file",
    "queue_size", "keepalive_s",
)
_MQTT_EXAMPLE = "vet_mqtt: {host: mqtt.example.net, port: 1883}"
_ANSIBLE_VARIABLES = ("ansible_connection", "ansible_host", "ansible_user", "ansible_port")

# Ansible keeps process-wide state (its Display singleton, the vault secrets context,
# the host_group_vars caches); one load at a time touches it.
_ANSIBLE_LOCK = threading.RLock()


class _Missing:
    """Marks a variable that is not set (distinct from one set to null)."""


_MISSING = _Missing()


# --------------------------------------------------------------------------- small checks


def normalize_mac(value: str) -> str:
    """Return `value` as lower-case colon-separated MAC; raise ValueError if it is not one.

    Accepts `:` or `-` separators (one kind per address), any letter case.
    """
    text = value.strip()
    match = re.fullmatch(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}", text)
    if not match:
        raise ValueError(f"{value!r} is not a MAC address")
    return text.replace("-", ":").lower()


def check_console_url(url: str) -> str | None:
    """Return None if `url` is a console vet can open, else what is wrong with it."""
    if url.startswith("/"):
        if not re.fullmatch(r"/dev/[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)*", url) or ".." in url:
            return "is not a serial device path (expected something like /dev/ttyS0)"
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme == "serial":
        if parts.netloc or not parts.path.startswith("/dev/"):
            return "names no device; write serial:///dev/ttyS1?baud=115200 (three slashes)"
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - {"baud"})
        if unknown:
            return f"has unknown option {unknown[0]!r}; serial:// takes only ?baud=N"
        if "baud" in query:
            baud = query["baud"][-1]
            if not baud.isdigit() or not 0 < int(baud) <= 4_000_000:
                return f"has baud {baud!r}; write a rate like baud=115200"
        return check_console_url(parts.path)
    if scheme in ("socket", "rfc2217"):
        if not parts.hostname:
            return f"names no host; write {scheme}://HOST:PORT"
        if port is None or port == 0:
            return f"names no port; write {scheme}://{parts.hostname}:PORT"
        if parts.path not in ("", "/"):
            return f"has a path {parts.path!r}; write {scheme}://HOST:PORT"
        return None
    return "is not a console URL"


def _secret_key(key: str, secret_keys: frozenset[str]) -> bool:
    lowered = key.lower()
    return lowered in secret_keys or any(lowered.endswith("_" + s) for s in secret_keys)


def _sexagesimal(number: int) -> str | None:
    """Undo YAML 1.1's base-60 reading of an unquoted all-digit MAC like 52:54:00:12:34:56."""
    if number < 0:
        return None
    parts = []
    for _ in range(5):
        number, digit = divmod(number, 60)
        parts.append(digit)
    if number > 99:
        return None
    parts.append(number)
    return ":".join(f"{p:02d}" for p in reversed(parts))


def _show(value: Any) -> str:
    """A short, quoted rendering of a value for a message."""
    if isinstance(value, str):
        text = "'" + value + "'"
    else:
        try:
            text = json.dumps(value, default=str, sort_keys=False)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


# --------------------------------------------------------------------------- problems


@dataclasses.dataclass
class _Problems:
    """Every mistake found, rendered `<inventory>: host <name>: <text>`.

    The same text for several hosts (a mistake in group_vars) becomes one line that
    names them all.
    """

    label: str
    items: list[tuple[str | None, str]] = dataclasses.field(default_factory=list)

    def add(self, host: str | None, text: str) -> None:
        self.items.append((host, text))

    def render(self) -> list[str]:
        order: list[str] = []
        hosts: dict[str, list[str]] = {}
        general: set[str] = set()
        for host, text in self.items:
            if text not in hosts:
                order.append(text)
                hosts[text] = []
            if host is None:
                general.add(text)
            elif host not in hosts[text]:
                hosts[text].append(host)
        lines = []
        for text in order:
            names = hosts[text]
            if text in general or not names:
                lines.append(f"{self.label}: {text}")
            elif len(names) == 1:
                lines.append(f"{self.label}: host {names[0]}: {text}")
            else:
                lines.append(f"{self.label}: hosts {', '.join(names)}: {text}")
        return lines

    def raise_if_any(self) -> None:
        if self.items:
            raise InventoryError(self.render())


# --------------------------------------------------------------------------- Ansible glue


def _ansible_error_types() -> tuple[type[BaseException], ...]:
    from ansible.errors import AnsibleError

    return (AnsibleError,)


@contextlib.contextmanager
def _captured_display() -> Iterator[list[str]]:
    """Route everything Ansible's Display would print into a list instead.

    Ansible deduplicates warnings per process, so the seen-sets are swapped for fresh
    ones while capturing: a second load of the same broken inventory reports again.
    """
    from ansible.utils.display import Display

    display = Display()
    captured: list[str] = []

    def capture(msg: Any, *args: Any, **kwargs: Any) -> None:
        captured.append(str(msg))

    names = ("display", "_warns", "_deprecations", "_errors")
    saved = {name: display.__dict__[name] for name in names if name in display.__dict__}
    display.display = capture
    for name in names[1:]:
        if name in saved:
            setattr(display, name, set())
    try:
        yield captured
    finally:
        for name in names:
            if name in saved:
                setattr(display, name, saved[name])
            else:
                display.__dict__.pop(name, None)


@contextlib.contextmanager
def _duplicate_keys_are_errors() -> Iterator[None]:
    """A key written twice in one YAML mapping (two vet_macs: lines) is an error naming
    the line: Ansible's default keeps the last one with a warning nobody sees here.
    The operator's own ANSIBLE_DUPLICATE_YAML_DICT_KEY wins."""
    name = "ANSIBLE_DUPLICATE_YAML_DICT_KEY"
    if name in os.environ:
        yield
        return
    os.environ[name] = "error"
    try:
        yield
    finally:
        os.environ.pop(name, None)


@contextlib.contextmanager
def _vault_context(secrets: list[tuple[str, Any]]) -> Iterator[None]:
    """Make `secrets` the ones Ansible (>= 2.19) decrypts inline `!vault` values with.

    Ansible's CLI initialises this context once per process; a library that loads
    several inventories with different passwords swaps it for the duration of a load.
    """
    try:
        from ansible.parsing.vault import VaultSecretsContext
    except ImportError:  # ansible-core < 2.19 decrypts through the DataLoader alone
        yield
        return
    saved = VaultSecretsContext._current
    VaultSecretsContext._current = VaultSecretsContext(secrets)
    try:
        yield
    finally:
        VaultSecretsContext._current = saved


def _clear_vars_plugin_caches() -> None:
    """Forget host_group_vars' process-wide caches of which vars files exist.

    Without this, a host_vars file or directory created after a first load in the same
    process (a long pytest session, the tests) is never seen.
    """
    import sys

    for name, module in list(sys.modules.items()):
        if name.endswith("host_group_vars") and module is not None:
            for attr in ("FOUND", "NAK"):
                cache = getattr(module, attr, None)
                if isinstance(cache, dict | set):
                    cache.clear()


def _origin_of(value: Any, root: Path) -> str | None:
    """`file:line` where Ansible read `value`, relative to the inventory root."""
    try:
        from ansible._internal._datatag._tags import Origin
    except ImportError:  # pragma: no cover - older ansible-core has no origin tags
        return None
    try:
        origin = value if isinstance(value, Origin) else Origin.get_tag(value)
    except Exception:  # pragma: no cover - defensive: tags are diagnostic only
        return None
    if origin is None or not getattr(origin, "path", None):
        return None
    path = str(origin.path)
    with contextlib.suppress(ValueError):
        relative = os.path.relpath(path, root)
        if not relative.startswith(".."):
            path = relative
    line = getattr(origin, "line_num", None)
    return f"{path}:{line}" if line else path


def _is_encrypted(value: Any) -> bool:
    return type(value).__name__ in ("EncryptedString", "AnsibleVaultEncryptedUnicode")


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _vault_failure(exc: BaseException) -> BaseException | None:
    for item in _exception_chain(exc):
        if type(item).__name__ in ("AnsibleVaultError", "UndecryptableVaultError"):
            return item
    return None


def _plain(value: Any) -> Any:
    """Ansible's tagged values (str/int/dict subclasses) -> plain Python values."""
    if isinstance(value, Mapping):
        return {(str(k) if isinstance(k, str) else k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) or _is_encrypted(value):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


class _VaultInfo:
    """How the vault password was given, for messages about values it cannot open."""

    def __init__(self, secrets: list[tuple[str, Any]], source: str | None) -> None:
        self.secrets = secrets
        self.source = source

    def reason(self) -> str:
        if not self.secrets:
            return (
                "but no vault password was given; pass --vault-password-file FILE "
                "(or set ANSIBLE_VAULT_PASSWORD_FILE)"
            )
        return (
            f"but the vault password from {self.source} does not decrypt it; "
            "pass the right file with --vault-password-file FILE"
        )


def _load_vault_secrets(label: str, loader: Any,
                        vault_password_file: str | Path | None) -> _VaultInfo:
    source: str | None = None
    if vault_password_file is not None:
        source = str(vault_password_file)
    else:
        from ansible import constants as ansible_constants

        configured = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE") or getattr(
            ansible_constants, "DEFAULT_VAULT_PASSWORD_FILE", None)
        if configured:
            source = str(configured)
    if source is None:
        return _VaultInfo([], None)
    if not Path(source).is_file():
        raise InventoryError(
            f"{label}: vault password file {source} does not exist or is not a file; "
            "pass --vault-password-file with the file that holds the vault password")
    from ansible.parsing.vault import get_file_vault_secret

    try:
        secret = get_file_vault_secret(filename=source, vault_id="default", loader=loader)
        secret.load()
    except _ansible_error_types() as exc:
        raise InventoryError(
            f"{label}: cannot read the vault password from {source}: {_first_line(exc)}; "
            "the file must hold the password on its first line (or be an executable "
            "that prints it)") from None
    return _VaultInfo([("default", secret)], source)


def _parse_failure_detail(source: str, captured: list[str]) -> str:
    """Pick the most telling of Ansible's per-plugin parse errors for one file."""
    by_plugin: dict[str, str] = {}
    locations: dict[str, str] = {}
    for message in captured:
        if source not in message:
            continue
        text = message.removeprefix("[WARNING]: ").strip()
        match = re.match(r"Failed to parse inventory with '([^']+)' plugin:?\s*(.*)", text)
        if not match:
            continue
        plugin, rest = match.group(1), match.group(2)
        first = rest.splitlines()[0].strip() if rest else ""
        first = first.removeprefix("Failed to parse inventory: ")
        by_plugin.setdefault(plugin, first.rstrip("."))
        where = re.search(re.escape(source) + r":(\d+)(?::(\d+))?", text)
        if where:
            column = f", column {where.group(2)}" if where.group(2) else ""
            locations.setdefault(plugin, f" (line {where.group(1)}{column})")
    if not by_plugin:
        return "no inventory plugin accepted it"
    yamlish = source.endswith((".yml", ".yaml", ".json"))
    preferred = ("yaml", "auto") if yamlish else ("ini", "yaml", "auto")
    for plugin in (*preferred, *by_plugin):
        if plugin in by_plugin:
            location = locations.get(plugin) or next(
                (locations[p] for p in preferred if p in locations), "")
            return f"{by_plugin[plugin]}{location} [{plugin} plugin]"
    return "no inventory plugin accepted it"  # pragma: no cover - loop always returns


# --------------------------------------------------------------------------- one host


class _HostReader:
    """Reads, renders and checks one host's `vet_*` and connection variables."""

    def __init__(self, *, name: str, variables: Mapping[str, Any], templar: Any,
                 root: Path, problems: _Problems, vault: _VaultInfo,
                 secret_keys: frozenset[str]) -> None:
        self.name = name
        self.variables = variables
        self.templar = templar
        self.root = root
        self.problems = problems
        self.vault = vault
        self.secret_keys = secret_keys
        self.origins: dict[str, str] = {}

    # -- reporting

    def bad(self, path: str, text: str) -> None:
        origin = self._origin_for(path)
        suffix = f" (from {origin})" if origin else ""
        self.problems.add(self.name, f"{text}{suffix}")

    def _origin_for(self, path: str) -> str | None:
        while path:
            if path in self.origins:
                return self.origins[path]
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                break
            path = path[:cut]
        return self.origins.get(path)

    # -- reading

    def _note_origins(self, name: str, raw: Any) -> None:
        for path, item in _walk(raw, name):
            origin = _origin_of(item, self.root)
            if origin:
                self.origins.setdefault(path, origin)

    def get(self, name: str) -> Any:
        """The variable rendered by Ansible's Templar and made plain, or _MISSING."""
        if name not in self.variables:
            return _MISSING
        raw = self.variables[name]
        self._note_origins(name, raw)
        try:
            return _plain(self.templar.template(raw))
        except Exception as exc:  # Ansible raises many types; every one is reported
            self._template_failed(name, raw, exc)
            return _MISSING

    def _template_failed(self, name: str, raw: Any, exc: BaseException) -> None:
        if _vault_failure(exc) is None:
            self.bad(name, f"{name} cannot be rendered by Ansible: {_first_line(exc)}; fix the "
                           "template or define the variable it uses")
            return
        reason = self.vault.reason()
        direct = [(path, item) for path, item in _walk(raw, name) if _is_encrypted(item)]
        reported = False
        for path, item in direct:
            origin = _origin_of(item, self.root)
            where = f" ({origin})" if origin else ""
            self.problems.add(self.name, f"{path} is vaulted{where} {reason}")
            reported = True
        if not reported:
            strings = [(p, v) for p, v in _walk(raw, name) if isinstance(v, str)]
            for var, value in self.variables.items():
                if not any(_is_encrypted(item) for _, item in _walk(value, var)):
                    continue
                for path, text in strings:
                    if re.search(rf"\b{re.escape(var)}\b", text):
                        origin = next((_origin_of(i, self.root) for _, i in _walk(value, var)
                                       if _is_encrypted(i)), None)
                        where = f" ({origin})" if origin else ""
                        self.problems.add(
                            self.name, f"{path} uses the vaulted variable {var}{where} {reason}")
                        reported = True
        if not reported:
            self.problems.add(self.name, f"{name} uses a vaulted value {reason}")

    # -- typed pieces

    def text(self, path: str, value: Any, *, example: str) -> str | None:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, float):
            self.bad(path, f"{path} was read as the number {value}, which may have lost digits; "
                           f"quote it: {example}")
        else:
            self.bad(path, f"{path} is {kind_of(value)}; write text, e.g. {example}")
        return None

    def integer(self, path: str, value: Any, *, minimum: int, example: str,
                maximum: int | None = None) -> int | None:
        number: int | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        elif (isinstance(value, float) and value.is_integer()) or (
                isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value)):
            number = int(value)
        if number is None:
            self.bad(path, f"{path} {_show(value)} is not a whole number; write e.g. {example}")
            return None
        if number < minimum or (maximum is not None and number > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            self.bad(path, f"{path} {number} is out of range; it must be at least "
                           f"{minimum}{upper}")
            return None
        return number

    def number(self, path: str, value: Any, *, example: str, positive: bool = True,
               maximum: float | None = None) -> float | None:
        result: float | None = None
        if isinstance(value, bool):
            result = None
        elif isinstance(value, int | float):
            result = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                result = float(value)
        if result is None or result != result:  # NaN is not a size
            self.bad(path, f"{path} {_show(value)} is not a number; write e.g. {example}")
            return None
        if (positive and result <= 0) or (not positive and result < 0) or (
                maximum is not None and result > maximum):
            bound = "greater than 0" if positive else "at least 0"
            upper = f" and at most {maximum:g}" if maximum is not None else ""
            self.bad(path, f"{path} {result:g} is out of range; it must be {bound}{upper}")
            return None
        return result

    def mapping(self, path: str, value: Any, *, example: str) -> dict[Any, Any] | None:
        if value is None:
            return {}
        if isinstance(value, Mapping):
            return dict(value)
        self.bad(path, f"{path} is {kind_of(value)} {_show(value)}; write a mapping, "
                       f"e.g. {example}")
        return None

    def keys(self, path: str, value: Mapping[Any, Any], allowed: tuple[str, ...]) -> None:
        for key in value:
            if key not in allowed:
                self.bad(f"{path}.{key}", f"{path} has unknown key {str(key)!r}"
                                          f"{did_you_mean(str(key), allowed)}; allowed keys: "
                                          f"{', '.join(allowed)}")

    def mac(self, path: str, value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool):
            recovered = _sexagesimal(value)
            hint = f": '{recovered}'" if recovered else ""
            self.bad(path, f"{path} was read as the number {value} because it is not quoted "
                           f"(YAML reads digits separated by colons as a base-60 number); "
                           f"quote it{hint}")
            return None
        if not isinstance(value, str):
            self.bad(path, f"{path} is {kind_of(value)}; write a MAC address like {_MAC_EXAMPLE}")
            return None
        try:
            mac = normalize_mac(value)
        except ValueError:
            self.bad(path, f"{path} {_show(value)} is not a MAC address; write six hex pairs "
                           f"like {_MAC_EXAMPLE}")
            return None
        if int(mac[:2], 16) & 1:
            self.bad(path, f"{path} {_show(value)} is a multicast address, which no NIC has; "
                           "check the digits (a NIC's first byte is even)")
            return None
        return mac

    # -- sections

    def connection(self) -> Connection:
        kind_value = self.get("ansible_connection")
        kind = "ssh"
        if kind_value is not _MISSING and kind_value is not None:
            if kind_value in CONNECTION_KINDS:
                kind = str(kind_value)
            else:
                self.bad("ansible_connection",
                         f"ansible_connection {_show(kind_value)} is not supported; use one of: "
                         f"{', '.join(CONNECTION_KINDS)}")
        address: str | None = None
        host_value = self.get("ansible_host")
        if host_value is not _MISSING and host_value is not None:
            address = self.text("ansible_host", host_value, example="ansible_host: 10.0.0.7")
        elif kind == "ssh":
            address = self.name  # what Ansible itself connects to
        user: str | None = None
        user_value = self.get("ansible_user")
        if user_value is not _MISSING and user_value is not None:
            user = self.text("ansible_user", user_value, example="ansible_user: root")
        port: int | None = None
        port_value = self.get("ansible_port")
        if port_value is not _MISSING and port_value is not None:
            port = self.integer("ansible_port", port_value, minimum=1, maximum=65535,
                                example="ansible_port: 22")
        key_file: str | None = None
        key_value = self.get("ansible_ssh_private_key_file")
        if key_value is not _MISSING and key_value is not None:
            key_file = self.text("ansible_ssh_private_key_file", key_value,
                                 example="ansible_ssh_private_key_file: ~/.ssh/vet_ed25519")
        host_key: str | None = None
        pin_value = self.get("vet_ssh_host_key")
        if pin_value is not _MISSING and pin_value is not None:
            host_key = self.text("vet_ssh_host_key", pin_value,
                                 example='vet_ssh_host_key: "SHA256:<43 characters>"')
            if host_key is not None and not _FINGERPRINT.fullmatch(host_key):
                self.bad("vet_ssh_host_key",
                         f"vet_ssh_host_key {_show(host_key)} is not an SSH fingerprint; write "
                         "it as `ssh-keygen -lf <host key>` prints it: SHA256: and 43 characters")
                host_key = None
        dead_after = 5.0
        dead_value = self.get("vet_ssh_dead_after_s")
        if dead_value is not _MISSING and dead_value is not None:
            checked = self.number("vet_ssh_dead_after_s", dead_value,
                                  example="vet_ssh_dead_after_s: 20", maximum=600)
            if checked is not None:
                dead_after = float(checked)
        return Connection(kind=kind, address=address, user=user, port=port, key_file=key_file,
                          host_key=host_key, dead_after_s=dead_after)

    def console_login(self) -> ConsoleLogin:
        value = self.get("vet_console_login")
        if value is _MISSING or value is None:
            return ConsoleLogin()
        table = self.mapping("vet_console_login", value,
                             example="vet_console_login: {user: root, password: ...}")
        if table is None:
            return ConsoleLogin()
        self.keys("vet_console_login", table, ("user", "password"))
        user = self.text("vet_console_login.user", table.get("user", "root"),
                         example="user: root") or "root"
        password = table.get("password")
        if password is not None and not isinstance(password, str):
            # A secret: say what is wrong without printing it.
            self.bad("vet_console_login.password",
                     "vet_console_login.password is not text (value not shown); quote it or, "
                     "better, vault it: ansible-vault encrypt_string")
            password = None
        return ConsoleLogin(user=user, password=password)

    def macs(self) -> tuple[str, ...]:
        many = self.get("vet_macs")
        one = self.get("vet_mac")
        if many is not _MISSING and one is not _MISSING and many and one:
            self.bad("vet_mac", "both vet_macs and vet_mac are set; keep one (vet_macs: "
                                f"['{_MAC_EXAMPLE}', ...] lists them all)")
            return ()
        result: list[str] = []
        if one is not _MISSING and one is not None:
            if isinstance(one, list | tuple):
                self.bad("vet_mac", "vet_mac holds one MAC; for a list, name it vet_macs")
            else:
                mac = self.mac("vet_mac", one)
                if mac:
                    result.append(mac)
        if many is not _MISSING and many is not None:
            items: list[Any]
            if isinstance(many, str):
                items = [part for part in re.split(r"[\s,]+", many) if part]
            elif isinstance(many, list | tuple):
                items = list(many)
            else:
                self.bad("vet_macs", f"vet_macs is {kind_of(many)}; write a list like "
                                     f"vet_macs: ['{_MAC_EXAMPLE}']")
                items = []
            for index, item in enumerate(items):
                mac = self.mac(f"vet_macs[{index}]", item)
                if mac is None:
                    continue
                if mac in result:
                    self.bad(f"vet_macs[{index}]", f"vet_macs[{index}] {mac} is listed twice")
                    continue
                result.append(mac)
        return tuple(result)

    def console(self) -> str | None:
        value = self.get("vet_console")
        if value is _MISSING or value is None or value == "":
            return None
        if not isinstance(value, str):
            self.bad("vet_console", f"vet_console is {kind_of(value)}; write one of "
                                    f"{_CONSOLE_FORMS}")
            return None
        url = value.strip()
        problem = check_console_url(url)
        if problem:
            self.bad("vet_console", f"vet_console {_show(url)} {problem}; write one of "
                                    f"{_CONSOLE_FORMS}")
            return None
        return url

    def power(self, macs: tuple[str, ...]) -> PowerConfig:
        value = self.get("vet_power")
        if value is _MISSING or value is None:
            return PowerConfig(driver="manual")
        known = ", ".join(sorted(POWER_DRIVERS))
        if not isinstance(value, Mapping):
            self.bad("vet_power", f"vet_power is {kind_of(value)}; write a mapping like "
                                  "{driver: ipmi, address: bmc.example, username: admin, "
                                  "password: ...}")
            return PowerConfig(driver="manual")
        driver = value.get("driver")
        if driver is None or driver == "":
            self.bad("vet_power", f"vet_power has no driver; set vet_power.driver to one of: "
                                  f"{known}")
            return PowerConfig(driver="manual")
        if driver not in POWER_DRIVERS:
            self.bad("vet_power.driver",
                     f"vet_power.driver {_show(driver)} is not a known power driver"
                     f"{did_you_mean(str(driver), list(POWER_DRIVERS))}; use one of: {known}")
            return PowerConfig(driver="manual")
        rule = POWER_DRIVERS[driver]
        entries = {str(k): v for k, v in value.items() if k != "driver"}
        for key in entries:
            if key not in rule.allowed:
                allowed = ", ".join(rule.allowed) or "no other keys"
                self.bad(f"vet_power.{key}",
                         f"vet_power has unknown key {key!r} for the {driver} driver"
                         f"{did_you_mean(key, rule.allowed)}; it takes: {allowed}")
        if driver == "wol" and entries.get("mac") in (None, "") and macs:
            entries["mac"] = macs[0]
        needs = ", ".join(rule.required)
        for key in rule.required:
            if entries.get(key) in (None, ""):
                extra = " (or give the host vet_macs)" if driver == "wol" and key == "mac" else ""
                self.bad(f"vet_power.{key}", f"vet_power.{key} is missing; the {driver} driver "
                                             f"needs {needs}{extra}")
        params: dict[str, Any] = {}
        secrets: dict[str, str] = {}
        for key, item in entries.items():
            if key not in rule.allowed or item is None:
                continue
            path = f"vet_power.{key}"
            if _secret_key(key, self.secret_keys):
                if isinstance(item, str):
                    secrets[key] = item
                else:  # never echo a secret, even a malformed one
                    self.bad(path, f"{path} is {kind_of(item)}; a secret must be text: quote it "
                                   "(or vault it with ansible-vault encrypt_string)")
                continue
            checked = self._power_param(driver, key, path, item)
            if checked is not None:
                params[key] = checked
        return PowerConfig(driver=str(driver), params=params, secrets=secrets)

    def _power_param(self, driver: str, key: str, path: str, item: Any) -> Any:
        if key in ("port", "cipher_suite"):
            return self.integer(path, item, minimum=0 if key == "cipher_suite" else 1,
                                maximum=65535, example=f"{key}: 623")
        if key in ("timeout_s", "shutdown_timeout_s"):
            return self.number(path, item, example=f"{key}: {30 if key == 'timeout_s' else 120}")
        if key == "ca_file":
            text = self.text(path, item, example="ca_file: files/bmc-ca.pem")
            return None if text is None else str(self.root / os.path.expanduser(text))
        if key == "verify_tls":
            if isinstance(item, bool):
                return item
            self.bad(path, f"{path} {_show(item)} is not true/false; write verify_tls: false")
            return None
        if key == "mac":
            return self.mac(path, item)
        if key == "url":
            url = self.text(path, item, example="url: https://bmc.example")
            if url is None:
                return None
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                self.bad(path, f"{path} {_show(url)} is not an http(s) URL; write e.g. "
                               "url: https://10.0.0.17")
                return None
            return url
        if isinstance(item, Mapping | list | tuple):
            self.bad(path, f"{path} is {kind_of(item)}; write a single value")
            return None
        if isinstance(item, str) and key in ("address", "qmp") and (
                not item.strip() or any(c.isspace() for c in item)):
            self.bad(path, f"{path} {_show(item)} contains spaces; write a "
                           f"{'host name or IP address' if key == 'address' else 'socket path'}")
            return None
        return item

    def spec(self) -> ExpectedSpec:
        value = self.get("vet_spec")
        if value is _MISSING:
            return ExpectedSpec()
        spec = self.mapping("vet_spec", value, example="vet_spec: {cpu: {cores: 16}}")
        if not spec:
            return ExpectedSpec()
        self.keys("vet_spec", spec, _SPEC_KEYS)
        psu_count = bios = bmc = None
        if spec.get("psu_count") is not None:
            psu_count = self.integer("vet_spec.psu_count", spec["psu_count"], minimum=0,
                                     example="psu_count: 2")
        if spec.get("bios_version") is not None:
            bios = self.text("vet_spec.bios_version", spec["bios_version"],
                             example="bios_version: '2.19.1'")
        if spec.get("bmc_version") is not None:
            bmc = self.text("vet_spec.bmc_version", spec["bmc_version"],
                            example="bmc_version: '7.10'")
        return ExpectedSpec(
            cpu=self._cpu(spec.get("cpu")),
            memory=self._memory(spec.get("memory")),
            disks=self._disks(spec.get("disks")),
            nics=self._nics(spec.get("nics")),
            gpus=self._gpus(spec.get("gpus")),
            psu_count=psu_count,
            bios_version=bios,
            bmc_version=bmc,
        )

    def _cpu(self, value: Any) -> ExpectedCpu:
        cpu = self.mapping("vet_spec.cpu", value, example="cpu: {sockets: 2, cores: 32}")
        if not cpu:
            return ExpectedCpu()
        self.keys("vet_spec.cpu", cpu, _CPU_KEYS)
        counts: dict[str, int | None] = {}
        for key in ("sockets", "cores", "threads"):
            counts[key] = None
            if cpu.get(key) is not None:
                counts[key] = self.integer(f"vet_spec.cpu.{key}", cpu[key], minimum=1,
                                           example=f"{key}: 16")
        model = None
        if cpu.get("model") is not None:
            model = self.text("vet_spec.cpu.model", cpu["model"],
                              example="model: 'AMD EPYC 7543'")
        return ExpectedCpu(model=model, sockets=counts["sockets"], cores=counts["cores"],
                           threads=counts["threads"])

    def _memory(self, value: Any) -> ExpectedMemory:
        memory = self.mapping("vet_spec.memory", value, example="memory: {total_gib: 256}")
        if not memory:
            return ExpectedMemory()
        self.keys("vet_spec.memory", memory, _MEMORY_KEYS)
        total = size = None
        tolerance: float | None = 5.0
        dimms = None
        if memory.get("total_gib") is not None:
            total = self.number("vet_spec.memory.total_gib", memory["total_gib"],
                                example="total_gib: 256")
        if memory.get("tolerance_pct") is not None:
            tolerance = self.number("vet_spec.memory.tolerance_pct", memory["tolerance_pct"],
                                    example="tolerance_pct: 5", positive=False, maximum=100)
        if memory.get("dimm_count") is not None:
            dimms = self.integer("vet_spec.memory.dimm_count", memory["dimm_count"], minimum=1,
                                 example="dimm_count: 8")
        if memory.get("dimm_size_gib") is not None:
            size = self.number("vet_spec.memory.dimm_size_gib", memory["dimm_size_gib"],
                               example="dimm_size_gib: 32")
        return ExpectedMemory(total_gib=total, tolerance_pct=5.0 if tolerance is None
                              else tolerance, dimm_count=dimms, dimm_size_gib=size)

    def _items(self, path: str, value: Any, example: str) -> list[tuple[str, dict[Any, Any]]]:
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            self.bad(path, f"{path} is {kind_of(value)}; write a list, e.g. {example}")
            return []
        result = []
        for index, item in enumerate(value):
            where = f"{path}[{index}]"
            if not isinstance(item, Mapping):
                self.bad(where, f"{where} is {kind_of(item)} {_show(item)}; write a mapping, "
                                f"e.g. {example}")
                continue
            result.append((where, dict(item)))
        return result

    def _disks(self, value: Any) -> tuple[ExpectedDisk, ...]:
        example = "disks: [{serial: 'S4EWNX0N123456', model: 'Samsung SSD 980', size_gb: 1000}]"
        disks = []
        seen: set[str] = set()
        for where, item in self._items("vet_spec.disks", value, example):
            self.keys(where, item, _DISK_KEYS)
            serial_value = item.get("serial")
            serial = None
            if serial_value in (None, ""):
                self.bad(where, f"{where} has no serial; every expected disk needs its serial "
                                "(the destructive stages only touch disks whose serial is "
                                "listed), e.g. serial: 'S4EWNX0N123456'")
            elif isinstance(serial_value, int | float) and not isinstance(serial_value, bool):
                self.bad(f"{where}.serial", f"{where}.serial was read as the number "
                                            f"{serial_value}, which may have lost digits; "
                                            "quote it: serial: '0012345'")
            else:
                serial = self.text(f"{where}.serial", serial_value,
                                   example="serial: 'S4EWNX0N123456'")
            if serial is not None and serial in seen:
                self.bad(f"{where}.serial", f"{where}.serial {_show(serial)} is listed twice")
                serial = None
            model = size = None
            if item.get("model") is not None:
                model = self.text(f"{where}.model", item["model"], example="model: 'PM983'")
            if item.get("size_gb") is not None:
                size = self.number(f"{where}.size_gb", item["size_gb"], example="size_gb: 960")
            if serial is not None:
                seen.add(serial)
                disks.append(ExpectedDisk(serial=serial, model=model, size_gb=size))
        return tuple(disks)

    def _nics(self, value: Any) -> tuple[ExpectedNic, ...]:
        nics = []
        example = f"nics: [{{mac: '{_MAC_EXAMPLE}', speed_mbps: 25000}}]"
        for where, item in self._items("vet_spec.nics", value, example):
            self.keys(where, item, _NIC_KEYS)
            if item.get("mac") in (None, ""):
                self.bad(where, f"{where} has no mac; write mac: '{_MAC_EXAMPLE}'")
                continue
            mac = self.mac(f"{where}.mac", item["mac"])
            speed = None
            if item.get("speed_mbps") is not None:
                speed = self.integer(f"{where}.speed_mbps", item["speed_mbps"], minimum=1,
                                     example="speed_mbps: 25000")
            if mac is not None:
                nics.append(ExpectedNic(mac=mac, speed_mbps=speed))
        return tuple(nics)

    def _gpus(self, value: Any) -> tuple[ExpectedGpu, ...]:
        gpus = []
        example = "gpus: [{model: 'NVIDIA H100 80GB HBM3', count: 8}]"
        for where, item in self._items("vet_spec.gpus", value, example):
            self.keys(where, item, _GPU_KEYS)
            if item.get("model") in (None, ""):
                self.bad(where, f"{where} has no model; write model: 'NVIDIA H100 80GB HBM3'")
                continue
            model = self.text(f"{where}.model", item["model"], example="model: 'NVIDIA L40S'")
            count: int | None = 1
            if item.get("count") is not None:
                count = self.integer(f"{where}.count", item["count"], minimum=1,
                                     example="count: 8")
            if model is not None and count is not None:
                gpus.append(ExpectedGpu(model=model, count=count))
        return tuple(gpus)

    def stage_table(self, path: str, value: Any) -> dict[str, dict[str, Any]]:
        table = self.mapping(path, value, example=f"{path.split('.')[0]}: "
                                                  "{cpu: {duration_s: 600}}")
        if not table:
            return {}
        result: dict[str, dict[str, Any]] = {}
        for stage, params in table.items():
            where = f"{path}.{stage}"
            if stage not in STAGES:
                self.bad(where, f"{path} names unknown stage {str(stage)!r}"
                                f"{did_you_mean(str(stage), STAGES)}; stages are: "
                                f"{', '.join(STAGES)}")
                continue
            checked = self.mapping(where, params, example=f"{stage}: {{duration_s: 600}}")
            if checked is not None:
                result[str(stage)] = checked
        return result

    def stages(self) -> dict[str, dict[str, Any]]:
        value = self.get("vet_stages")
        return {} if value is _MISSING else self.stage_table("vet_stages", value)

    def profiles(self) -> dict[str, dict[str, dict[str, Any]]]:
        value = self.get("vet_profiles")
        if value is _MISSING:
            return {}
        table = self.mapping("vet_profiles", value,
                             example="vet_profiles: {quick: {cpu: {duration_s: 60}}}")
        if not table:
            return {}
        result = {}
        for profile, stages in table.items():
            where = f"vet_profiles.{profile}"
            if not isinstance(profile, str) or not re.fullmatch(r"[A-Za-z0-9][\w.-]*", profile):
                self.bad(where, f"vet_profiles has a profile named {_show(profile)}; name "
                                "profiles with letters, digits, '-', '_' or '.' (like quick)")
                continue
            result[profile] = self.stage_table(where, stages)
        return result

    def unknown_vet_variables(self) -> None:
        for name in self.variables:
            if isinstance(name, str) and name.startswith("vet_") and name not in VET_VARIABLES:
                self._note_origins(name, self.variables[name])
                self.bad(name, f"{name} is not a vet variable{did_you_mean(name, VET_VARIABLES)}; "
                               f"vet reads: {', '.join(VET_VARIABLES)}")

    def mqtt(self) -> MqttConfig | None:
        """`vet_mqtt` (a group_vars/all variable): the broker live events go to, checked."""
        value = self.get("vet_mqtt")
        if value is _MISSING or value is None:
            return None
        table = self.mapping("vet_mqtt", value, example=_MQTT_EXAMPLE)
        if table is None:
            return None
        before = len(self.problems.items)
        self.keys("vet_mqtt", table, _MQTT_KEYS)
        host = None
        if table.get("host") in (None, ""):
            self.bad("vet_mqtt.host", f"vet_mqtt.host is missing; name the broker, e.g. "
                                      f"{_MQTT_EXAMPLE}")
        else:
            host = self.text("vet_mqtt.host", table["host"], example="host: mqtt.example.net")
        tls = table.get("tls", False)
        if not isinstance(tls, bool):
            self.bad("vet_mqtt.tls", f"vet_mqtt.tls {_show(tls)} is not true/false; write "
                                     "tls: true (the broker's CA in ca_file, or the system's)")
            tls = False
        ca_file = None
        if table.get("ca_file") not in (None, ""):
            ca_file = self.text("vet_mqtt.ca_file", table["ca_file"],
                                example="ca_file: /etc/ssl/certs/broker-ca.pem")
            if ca_file is not None:
                ca_file = os.path.abspath(os.path.expanduser(ca_file))
                tls = True
                if not os.path.isfile(ca_file):
                    self.bad("vet_mqtt.ca_file", f"vet_mqtt.ca_file {ca_file} does not exist; "
                                                 "give the PEM file of the broker's CA")
        port = 8883 if tls else 1883
        if table.get("port") is not None:
            port = self.integer("vet_mqtt.port", table["port"], minimum=1, maximum=65535,
                                example="port: 1883") or port
        credentials: dict[str, str | None] = {}
        for key in ("username", "password"):
            item = table.get(key)
            if item is not None and not isinstance(item, str):
                shown = "(value not shown)" if key == "password" else _show(item)
                self.bad(f"vet_mqtt.{key}", f"vet_mqtt.{key} {shown} is not text; quote it"
                         + (" or, better, vault it: ansible-vault encrypt_string"
                            if key == "password" else ""))
                item = None
            credentials[key] = item
        if credentials["password"] and not credentials["username"]:
            self.bad("vet_mqtt.password", "vet_mqtt.password is set without a username; add "
                                          "username: (the broker account)")
        prefix = table.get("topic_prefix", "vet")
        if not isinstance(prefix, str) or not re.fullmatch(r"[^/+#\s]+(?:/[^/+#\s]+)*", prefix):
            self.bad("vet_mqtt.topic_prefix",
                     f"vet_mqtt.topic_prefix {_show(prefix)} is not a topic prefix: no "
                     "wildcards (+ #), spaces or empty levels; write e.g. topic_prefix: dc1/vet")
            prefix = "vet"
        queue_size = self.integer("vet_mqtt.queue_size", table.get("queue_size", 10000),
                                  minimum=1, maximum=1_000_000, example="queue_size: 10000")
        keepalive = self.integer("vet_mqtt.keepalive_s", table.get("keepalive_s", 30),
                                 minimum=5, maximum=3600, example="keepalive_s: 30")
        if len(self.problems.items) > before or host is None:
            return None
        return MqttConfig(host=host, port=port, username=credentials["username"],
                          password=credentials["password"], topic_prefix=prefix, tls=tls,
                          ca_file=ca_file, queue_size=queue_size or 10000,
                          keepalive_s=keepalive or 30)

    def notify(self) -> tuple[NotifyRoute, ...]:
        """`vet_notify` (a group_vars/all variable): where notifications go, checked by
        harness.notify (which knows apprise's URLs); a wrong route is left out."""
        value = self.get("vet_notify")
        if value is _MISSING or value is None:
            return ()
        routes, problems = check_routes(value)
        for path, text in problems:
            self.bad(path, text)
        return routes

    def lab_vars(self) -> dict[str, Any]:
        """vet_lab / vet_lab_guest as plain data; harness.lab checks them (lab hosts only)."""
        found = {}
        for key, name in (("lab", "vet_lab"), ("guest", "vet_lab_guest")):
            value = self.get(name)
            if value is not _MISSING and value is not None:
                found[key] = _plain(value)
        return found

    def hold(self) -> HoldPolicy:
        """`vet_hold_ttl_h` and `vet_release_power_off`: what happens to a failed host."""
        policy = HoldPolicy()
        ttl = self.get("vet_hold_ttl_h")
        if ttl is not _MISSING and ttl is not None:
            hours = self.number("vet_hold_ttl_h", ttl, example="vet_hold_ttl_h: 48",
                                maximum=24 * 90)
            if hours is not None:
                policy = dataclasses.replace(policy, ttl_h=hours)
        power_off = self.get("vet_release_power_off")
        if power_off is not _MISSING and power_off is not None:
            if isinstance(power_off, bool):
                policy = dataclasses.replace(policy, power_off=power_off)
            else:
                self.bad("vet_release_power_off",
                         f"vet_release_power_off {_show(power_off)} is not true/false; write "
                         "vet_release_power_off: false to leave released hosts on")
        return policy

    def pxe(self, connection: Connection) -> PxeConfig | None:
        """`vet_pxe`, checked; None when it is unset or wrong (the problems say why)."""
        value = self.get("vet_pxe")
        if value is _MISSING or value is None:
            return None
        table = self.mapping("vet_pxe", value, example=_PXE_EXAMPLE)
        if table is None:
            return None
        before = len(self.problems.items)
        if "ip" in table:
            self.bad("vet_pxe.ip", "vet_pxe.ip is not a vet_pxe key: a host's fixed DHCP "
                                   "address is its ansible_host (e.g. ansible_host: 10.0.0.21)")
            table.pop("ip")
        self.keys("vet_pxe", table, _PXE_KEYS)
        for key in _PXE_REQUIRED:
            if table.get(key) in (None, ""):
                self.bad(f"vet_pxe.{key}", f"vet_pxe.{key} is missing; vet_pxe needs "
                                           f"{', '.join(_PXE_REQUIRED)}, e.g. {_PXE_EXAMPLE}")
        server = self._ipv4("vet_pxe.server", table.get("server"), "server: 10.0.0.1")
        network = self._pxe_network(server, table.get("netmask", "255.255.255.0"))
        dhcp_range = self._dhcp_range(table.get("dhcp_range"), server, network)
        interface = None
        if table.get("interface") not in (None, ""):
            interface = self.text("vet_pxe.interface", table["interface"],
                                  example="interface: eno2")
            if interface is not None and not re.fullmatch(r"[A-Za-z0-9_.:@+*-]{1,15}",
                                                          interface):
                self.bad("vet_pxe.interface",
                         f"vet_pxe.interface {_show(interface)} is not a network interface "
                         "name (at most 15 letters, digits or . _ - : @ +); write e.g. "
                         "interface: eno2")
        port = 8080
        if table.get("http_port") is not None:
            port = self.integer("vet_pxe.http_port", table["http_port"], minimum=1,
                                maximum=65535, example="http_port: 8080") or port
        root = self._pxe_path("root", table.get("root", "/srv/vet-pxe"), "root: /srv/vet-pxe")
        mode = table.get("mode", "service")
        if mode not in _PXE_MODES:
            self.bad("vet_pxe.mode", f"vet_pxe.mode {_show(mode)} is not a PXE mode; write "
                                     "mode: service (systemd units on the PXE server) or "
                                     "mode: lab (files only, the virtual lab runs them)")
        ipv6_ra = table.get("ipv6_ra", True)
        if not isinstance(ipv6_ra, bool):
            self.bad("vet_pxe.ipv6_ra", f"vet_pxe.ipv6_ra {_show(ipv6_ra)} is not true/false; "
                                        "write ipv6_ra: true")
        key_file = None
        if table.get("token_key_file") not in (None, ""):
            key_file = self._pxe_path("token_key_file", table["token_key_file"],
                                      "token_key_file: ~/.config/vet/token.key")
        token_key = table.get("token_key")
        if token_key is not None and (not isinstance(token_key, str) or not token_key.strip()):
            # A secret: say what is wrong without printing it.
            self.bad("vet_pxe.token_key", "vet_pxe.token_key is not a non-empty text (value "
                                          "not shown); vault it: ansible-vault encrypt_string "
                                          "\"$(openssl rand -hex 32)\" --name token_key")
        ttl = 86400
        if table.get("token_ttl_s") is not None:
            ttl = self.integer("vet_pxe.token_ttl_s", table["token_ttl_s"], minimum=60,
                               example="token_ttl_s: 86400") or ttl
        if network is not None and connection.kind != "local" and connection.address:
            with contextlib.suppress(ValueError):
                address = ipaddress.IPv4Address(connection.address)
                if address not in network:
                    self.bad("ansible_host",
                             f"ansible_host {address} is outside the PXE network {network} "
                             "(vet_pxe.server and vet_pxe.netmask); the PXE server leases "
                             "ansible_host to the host, so put it in that network")
        if len(self.problems.items) > before or None in (server, interface, dhcp_range, root):
            return None
        assert server is not None and interface is not None and dhcp_range is not None
        assert root is not None
        return PxeConfig(server=server, interface=interface, dhcp_range=dhcp_range,
                         netmask=str(network.netmask) if network else "255.255.255.0",
                         http_port=port, root=root, mode=str(mode), ipv6_ra=bool(ipv6_ra),
                         token_key_file=key_file,
                         token_key=token_key.strip() if isinstance(token_key, str) else None,
                         token_ttl_s=ttl)

    def _ipv4(self, path: str, value: Any, example: str) -> str | None:
        if value in (None, ""):
            return None
        try:
            return str(ipaddress.IPv4Address(str(value).strip()))
        except ValueError:
            self.bad(path, f"{path} {_show(value)} is not an IPv4 address; write e.g. {example}")
            return None

    def _pxe_network(self, server: str | None, netmask: Any) -> ipaddress.IPv4Network | None:
        try:
            mask = ipaddress.IPv4Network(f"0.0.0.0/{str(netmask).strip()}").prefixlen
        except ValueError:
            self.bad("vet_pxe.netmask", f"vet_pxe.netmask {_show(netmask)} is not a netmask; "
                                        "write e.g. netmask: 255.255.255.0")
            return None
        if server is None:
            return None
        return ipaddress.IPv4Network(f"{server}/{mask}", strict=False)

    def _dhcp_range(self, value: Any, server: str | None,
                    network: ipaddress.IPv4Network | None) -> tuple[str, str] | None:
        example = "dhcp_range: '10.0.0.100,10.0.0.199' (or a list of the two)"
        if value in (None, ""):
            return None
        parts = ([p.strip() for p in value.split(",")] if isinstance(value, str)
                 else list(value) if isinstance(value, list | tuple) else None)
        if parts is None or len(parts) != 2:
            self.bad("vet_pxe.dhcp_range", f"vet_pxe.dhcp_range {_show(value)} is not a first "
                                           f"and a last address; write {example}")
            return None
        first = self._ipv4("vet_pxe.dhcp_range", parts[0], example)
        last = self._ipv4("vet_pxe.dhcp_range", parts[1], example)
        if first is None or last is None:
            return None
        if ipaddress.IPv4Address(first) > ipaddress.IPv4Address(last):
            self.bad("vet_pxe.dhcp_range", f"vet_pxe.dhcp_range starts at {first}, after its "
                                           f"end {last}; write the lower address first")
            return None
        if network is not None:
            for address in (first, last):
                if ipaddress.IPv4Address(address) not in network:
                    self.bad("vet_pxe.dhcp_range",
                             f"vet_pxe.dhcp_range address {address} is outside the PXE network "
                             f"{network} (vet_pxe.server and vet_pxe.netmask); use addresses "
                             "of that network")
                    return None
            if server is not None and (ipaddress.IPv4Address(first)
                                       <= ipaddress.IPv4Address(server)
                                       <= ipaddress.IPv4Address(last)):
                self.bad("vet_pxe.dhcp_range",
                         f"vet_pxe.dhcp_range {first}-{last} contains the server's own address "
                         f"{server}; dnsmasq could lease it to a host: move the range")
                return None
        return first, last

    def _pxe_path(self, key: str, value: Any, example: str) -> str | None:
        path = f"vet_pxe.{key}"
        text = self.text(path, value, example=example)
        if text is None:
            return None
        if not text.strip() or re.search(r"[\s,]", text):
            self.bad(path, f"{path} {_show(text)} contains spaces or commas, which dnsmasq.conf "
                           f"cannot hold; choose a plain path, e.g. {example}")
            return None
        return os.path.abspath(os.path.expanduser(text))

    def read(self, groups: tuple[str, ...]) -> Host:
        self.unknown_vet_variables()
        connection = self.connection()
        before = len(self.problems.items)
        macs = self.macs()
        mac_problems = len(self.problems.items) > before
        if not macs and connection.kind != "local" and not mac_problems:
            self.problems.add(
                self.name,
                f"has no MAC address; set vet_macs: ['{_MAC_EXAMPLE}'] (every host that is not "
                "ansible_connection: local needs one: the PXE server only boots listed MACs)")
        return Host(
            name=self.name,
            connection=connection,
            macs=macs,
            console=self.console(),
            console_login=self.console_login(),
            power=self.power(macs),
            mqtt=self.mqtt(),
            spec=self.spec(),
            stage_params=self.stages(),
            profile_params=self.profiles(),
            groups=groups,
            lab=self.lab_vars(),
            pxe=self.pxe(connection),
            hold=self.hold(),
            notify=self.notify(),
        )


# --------------------------------------------------------------------------- the loader


def load_inventory(path: str | Path, pattern: str | None = None,
                   vault_password_file: str | Path | None = None, *,
                   secret_keys: frozenset[str] = SECRET_KEYS) -> list[Host]:
    """Load an Ansible inventory (directory or file) and return its hosts, sorted by name.

    `pattern` selects hosts like `ansible-playbook --limit` ("node0*", "rack1:!node03",
    group names). `vault_password_file` opens vaulted values; without it the file
    named by ANSIBLE_VAULT_PASSWORD_FILE (or ansible.cfg) is used, if any.
    Raises InventoryError listing every problem found.
    """
    label = str(path)
    source = Path(path)
    if not source.exists():
        raise InventoryError(
            f"{label}: no such inventory file or directory; pass --inventory with an Ansible "
            "inventory directory (like inventory/example) or file")
    if not (source.is_dir() or source.is_file()):
        raise InventoryError(f"{label}: is neither a file nor a directory; pass --inventory "
                             "with an Ansible inventory directory or file")
    with _ANSIBLE_LOCK, _captured_display() as captured, _duplicate_keys_are_errors():
        try:
            from ansible.parsing.dataloader import DataLoader

            loader = DataLoader()
            vault = _load_vault_secrets(label, loader, vault_password_file)
            loader.set_vault_secrets(vault.secrets)
            with _vault_context(vault.secrets):
                return _load(label, source, pattern, loader, vault, secret_keys, captured)
        except _ansible_error_types() as exc:  # anything Ansible raises that we did not place
            raise InventoryError(f"{label}: Ansible cannot load this inventory: "
                                 f"{_first_line(exc)}") from None
        finally:
            for line in captured:
                log.debug("ansible: %s", line.strip())


def _make_manager(loader: Any, source: str) -> tuple[Any, list[str]]:
    from ansible.inventory.manager import InventoryManager

    unparsed: list[str] = []

    class RecordingInventoryManager(InventoryManager):  # type: ignore[misc]
        """Notes each file no inventory plugin could parse (Ansible only warns)."""

        def parse_source(self, source: Any, cache: bool = False) -> Any:
            parsed = super().parse_source(source, cache=cache)
            if not parsed and not os.path.isdir(source):
                unparsed.append(str(source))
            return parsed

    return RecordingInventoryManager(loader=loader, sources=[source]), unparsed


def _load(label: str, source: Path, pattern: str | None, loader: Any, vault: _VaultInfo,
          secret_keys: frozenset[str], captured: list[str]) -> list[Host]:
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    problems = _Problems(label)
    root = source.resolve() if source.is_dir() else source.resolve().parent
    _clear_vars_plugin_caches()
    try:
        manager, unparsed = _make_manager(loader, str(source.resolve()))
    except _ansible_error_types() as exc:
        raise InventoryError(f"{label}: Ansible cannot read this inventory: "
                             f"{_first_line(exc)}") from None
    for failed in unparsed:
        shown = os.path.relpath(failed, root) if source.is_dir() else label
        where = f"{shown}: " if source.is_dir() else ""
        problems.add(None, f"{where}Ansible cannot parse this file as an inventory: "
                           f"{_parse_failure_detail(failed, captured)}; fix it (YAML or INI "
                           "inventory format) or move it out of the inventory")
    problems.raise_if_any()

    every = sorted((h for h in manager.get_hosts("all") if not getattr(h, "implicit", False)),
                   key=lambda h: str(h.name))
    if not every:
        raise InventoryError(f"{label}: this inventory has no hosts; list them in a hosts.yml "
                             "(see docs/INVENTORY.md)")
    selected_names = {str(h.name) for h in every}
    if pattern is not None:
        try:
            manager.subset(pattern)
            chosen = manager.get_hosts("all")
        except _ansible_error_types() as exc:
            raise InventoryError(f"{label}: host pattern {pattern!r} is not valid: "
                                 f"{_first_line(exc)}") from None
        selected_names = {str(h.name) for h in chosen if not getattr(h, "implicit", False)}
        if not selected_names:
            groups = sorted(g for g in manager.groups if g not in ("all", "ungrouped"))
            raise InventoryError(
                f"{label}: host pattern {pattern!r} matches no host; hosts: "
                f"{', '.join(str(h.name) for h in every)}; groups: "
                f"{', '.join(groups) or '(none)'}")

    variable_manager = VariableManager(loader=loader, inventory=manager)
    hosts: list[Host] = []
    mac_owners: dict[str, list[str]] = {}
    serial_owners: dict[str, list[str]] = {}
    for ansible_host in every:
        name = str(ansible_host.name)
        # Unselected hosts are read too (their MACs and disk serials must not clash with
        # the selected ones), but their own mistakes do not block a limited run.
        sink = problems if name in selected_names else _Problems(label)
        try:
            variables = variable_manager.get_vars(host=ansible_host, include_hostvars=False)
        except _ansible_error_types() as exc:
            sink.add(name, _vars_failure(exc, root, vault))
            continue
        group_names = tuple(sorted(str(g.name) for g in ansible_host.get_groups()
                                   if g.name not in ("all", "ungrouped")))
        reader = _HostReader(name=name, variables=variables,
                             templar=Templar(loader=loader, variables=variables), root=root,
                             problems=sink, vault=vault, secret_keys=secret_keys)
        host = reader.read(group_names)
        for mac in host.macs:
            mac_owners.setdefault(mac, []).append(name)
        for disk in host.spec.disks:
            serial_owners.setdefault(disk.serial, []).append(name)
        if name in selected_names:
            hosts.append(host)
    for mac, owners in mac_owners.items():
        if len(owners) > 1 and selected_names.intersection(owners):
            problems.add(None, f"hosts {' and '.join(owners)} have the same MAC {mac} in "
                               "vet_macs; a MAC belongs to one host, fix the copy")
    for serial, owners in serial_owners.items():
        if len(owners) > 1 and selected_names.intersection(owners):
            problems.add(None, f"hosts {' and '.join(owners)} both expect disk serial "
                               f"{serial!r} in vet_spec.disks; a disk is in one host, fix "
                               "the copy")
    problems.raise_if_any()
    return hosts


def _vars_failure(exc: BaseException, root: Path, vault: _VaultInfo) -> str:
    """What to tell the operator when Ansible cannot even gather a host's variables."""
    failure = _vault_failure(exc)
    if failure is not None:
        where = None
        for item in _exception_chain(exc):
            where = _origin_of(getattr(item, "obj", None), root) or where
        name = where.rsplit(":", 1)[0] if where and where.count(":") else where
        return f"{name or 'a variables file'} is vault-encrypted {vault.reason()}"
    where = None
    for item in _exception_chain(exc):
        where = where or _origin_of(getattr(item, "obj", None), root)
    source = f" from {where}" if where else ""
    return f"Ansible cannot read its variables{source}: {_first_line(exc)}"


# --------------------------------------------------------------------------- draft
