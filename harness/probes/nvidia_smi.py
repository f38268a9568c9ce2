"""nvidia-smi output -> NvidiaSmiReport: `-q -x` (XML), `-q` (text) and the default table.

The XML and the `-q` text carry the same tree under different names and layouts (and the
names change between driver generations: `clocks_throttle_reasons` became
`clocks_event_reasons`; ECC counters went from single/double bit per unit to SRAM/DRAM).
Both are first turned into one nested mapping with snake_case keys, then every field is
read through a short list of known paths, so a new driver's renamed field is one more path.

Several `-q` logs in one text (`nvidia-smi -q -l`, or a capture bundle with other commands
between them, separated by '#' lines) become several snapshots, in order. The default
table only gives name, bus id, temperature, power, P-state and the volatile uncorrected
ECC count, so most fields are None there.

XML is read with the standard library: its expat (>= 2.4.1) refuses entity-expansion bombs,
and nvidia-smi's DOCTYPE names a DTD that is never fetched.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.probes._common import fail, small_int

TOOL = "nvidia-smi"

Tree = dict[str, "str | Tree"]

_LOG_BANNER = "==============NVSMI LOG=============="
_GPU_HEADER = re.compile(r"GPU ([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])")
_TEXT_LINE = re.compile(r"(?P<indent> *)(?P<key>\S.*?)\s+:(?: (?P<value>.*))?")
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_NOT_A_VALUE = ("n/a", "[n/a]", "not supported", "[not supported]", "unknown error",
                "requested functionality has been deprecated", "insufficient permissions",
                "[insufficient permissions]", "")
_TABLE_ROW = re.compile(r"\|\s*(?P<index>\d+)\s+(?P<name>.+?)\s+(?P<persistence>On|Off)\s*"
                        r"\|\s*(?P<bus>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])"
                        r"\s+(?P<disp>\S+)\s*\|\s*(?P<ecc>\S+)\s*\|")
_TABLE_ROW2 = re.compile(r"\|\s*(?P<fan>\S+)\s+(?P<temp>\d+C|N/A)\s+(?P<perf>P\d+|N/A)\s+"
                         r"(?:(?P<power>\d+W|N/A)\s*/\s*(?P<cap>\d+W|N/A))?\s*\|")
_TABLE_DRIVER = re.compile(r"NVIDIA-SMI\s+(?P<smi>\S+)\s+Driver Version:\s*(?P<driver>\S+)"
                           r"(?:\s+CUDA Version:\s*(?P<cuda>\S+))?")


@dataclass(frozen=True)
class EccCounts:
    """ECC error counters of one scope (volatile: since reset; aggregate: lifetime).

    None means "not applicable" (ECC unsupported or disabled, N/A in the output), which is
    not the same as 0. `details` keeps every numeric counter under its dotted path.
    """

    correctable: int | None
    uncorrectable: int | None
    details: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class NvidiaGpu:
    pci_bus_id: str | None
    index: int | None
    product_name: str | None
    serial: str | None
    uuid: str | None
    vbios_version: str | None
    persistence_mode: str | None
    performance_state: str | None
    mig_mode: str | None
    ecc_mode: str | None
    ecc_volatile: EccCounts | None
    ecc_aggregate: EccCounts | None
    retired_pages_single_bit: int | None
    retired_pages_double_bit: int | None
    retired_pages_pending: bool | None
    remapped_rows_correctable: int | None
    remapped_rows_uncorrectable: int | None
    remapped_rows_pending: bool | None
    remapped_rows_failure: bool | None
    clock_event_reasons: Mapping[str, bool]
    temperature_c: int | None
    memory_temperature_c: int | None
    slowdown_temperature_c: int | None
    shutdown_temperature_c: int | None
    power_draw_w: float | None
    power_limit_w: float | None
    graphics_clock_mhz: int | None
    sm_clock_mhz: int | None
    memory_clock_mhz: int | None
    max_graphics_clock_mhz: int | None
    max_memory_clock_mhz: int | None
    pcie_gen_current: int | None
    pcie_gen_max: int | None
    pcie_width_current: int | None
    pcie_width_max: int | None
    pcie_replays: int | None

    @property
    def label(self) -> str:
        """How reasons name the GPU: index/bus id, model and serial."""
        where = self.pci_bus_id or (f"#{self.index}" if self.index is not None else "?")
        name = self.product_name or "GPU"
        serial = f", serial {self.serial}" if self.serial and self.serial.strip("0") else ""
        return f"GPU {where} ({name}{serial})"

    @property
    def active_clock_event_reasons(self) -> tuple[str, ...]:
        return tuple(name for name, active in self.clock_event_reasons.items() if active)


@dataclass(frozen=True)
class NvidiaSmiLog:
    """One snapshot: one XML document, one `-q` log, or one default table."""

    timestamp: str | None
    driver_version: str | None
    cuda_version: str | None
    gpus: tuple[NvidiaGpu, ...]


@dataclass(frozen=True)
class NvidiaSmiReport:
    format: str  # "xml", "query-text" or "table"
    logs: tuple[NvidiaSmiLog, ...]

    @property
    def gpus(self) -> tuple[NvidiaGpu, ...]:
        """The GPUs of the last snapshot (the latest state)."""
        return self.logs[-1].gpus if self.logs else ()


def parse_nvidia_smi(text: str) -> NvidiaSmiReport:
    """Parse `nvidia-smi -q -x`, `nvidia-smi -q` (one or more logs) or plain `nvidia-smi`."""
    stripped = text.lstrip()
    if not stripped:
        fail(TOOL, "empty output")
    if stripped.startswith("<"):
        return NvidiaSmiReport("xml", (_xml_log(text),))
    if _LOG_BANNER in text:
        return NvidiaSmiReport("query-text", _text_logs(text))
    if "NVIDIA-SMI" in text and "Driver Version" in text:
        return NvidiaSmiReport("table", (_table_log(text),))
    if "No devices were found" in text:
        return NvidiaSmiReport("query-text", (NvidiaSmiLog(None, None, None, ()),))
    fail(TOOL, "neither XML (-q -x), an 'NVSMI LOG' (-q) nor the NVIDIA-SMI table "
               "(not nvidia-smi output?)")


# --- XML ----------------------------------------------------------------------------------

def _xml_log(text: str) -> NvidiaSmiLog:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        line, column = exc.position
        if "no element found" in str(exc) or "unclosed token" in str(exc):
            fail(TOOL, f"truncated XML at line {line}")
        fail(TOOL, f"invalid XML at line {line} column {column}: {str(exc).split(':')[0]}")
    except (ValueError, RecursionError) as exc:
        fail(TOOL, f"unreadable XML: {type(exc).__name__}")
    if root.tag != "nvidia_smi_log":
        fail(TOOL, f"XML root is <{root.tag[:40]}>, expected <nvidia_smi_log>")
    gpus = []
    for index, element in enumerate(root.findall("gpu")):
        tree = _element_tree(element, 0)
        if not isinstance(tree, dict):
            fail(TOOL, f"<gpu> #{index} is empty (truncated?)")
        gpus.append(_gpu(tree, element.get("id"), None, f"gpu[{index}]"))
    return NvidiaSmiLog(
        timestamp=_leaf(root, "timestamp"),
        driver_version=_leaf(root, "driver_version"),
        cuda_version=_leaf(root, "cuda_version"),
        gpus=tuple(gpus),
    )


def _element_tree(element: ET.Element, depth: int) -> str | Tree:
    if depth > 32:
        fail(TOOL, "XML nested more than 32 levels")
    children = list(element)
    if not children:
        return (element.text or "").strip()
    tree: Tree = {}
    for child in children:
        tree.setdefault(child.tag, _element_tree(child, depth + 1))
    return tree


def _leaf(root: ET.Element, tag: str) -> str | None:
    child = root.find(tag)
    return None if child is None else _value((child.text or "").strip())


# --- -q text --------------------------------------------------------------------------------

def _text_logs(text: str) -> tuple[NvidiaSmiLog, ...]:
    segments = text.split(_LOG_BANNER)[1:]
    return tuple(_text_log(segment, number) for number, segment in enumerate(segments, 1))


def _text_log(segment: str, number: int) -> NvidiaSmiLog:
    header: Tree = {}
    gpus: list[tuple[str, Tree]] = []
    stack: list[tuple[int, Tree]] = []
    for line in segment.splitlines():
        if line.startswith("#"):
            break  # the end of this log inside a capture bundle
        if not line.strip():
            continue
        gpu = _GPU_HEADER.fullmatch(line.rstrip())
        if gpu is not None:
            tree: Tree = {}
            gpus.append((gpu.group(1), tree))
            stack = [(0, tree)]
            continue
        match = _TEXT_LINE.fullmatch(line.rstrip())
        indent = len(line) - len(line.lstrip(" "))
        key = _snake(match.group("key") if match else line.strip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else header
        if match is None:  # a section heading: its lines follow, indented
            section: Tree = {}
            existing = parent.setdefault(key, section)
            stack.append((indent, existing if isinstance(existing, dict) else section))
        else:
            parent.setdefault(key, (match.group("value") or "").strip())
            # Lines indented under a valued line (HW Slowdown's parts) count as its siblings.
            stack.append((indent, parent))
    declared = _int_of(header.get("attached_gpus"))
    if declared and not gpus:
        fail(TOOL, f"NVSMI log #{number}: 'Attached GPUs' is {declared} but no GPU section "
                   "follows (truncated?)")
    return NvidiaSmiLog(
        timestamp=_str_of(header.get("timestamp")),
        driver_version=_str_of(header.get("driver_version")),
        cuda_version=_str_of(header.get("cuda_version")),
        gpus=tuple(_gpu(tree, bus, None, f"log {number} GPU {bus}") for bus, tree in gpus),
    )


def _snake(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.strip().lower()).strip("_")


# --- default table ---------------------------------------------------------------------

def _table_log(text: str) -> NvidiaSmiLog:
    lines = text.splitlines()
    driver = cuda = None
    gpus: list[NvidiaGpu] = []
    for number, line in enumerate(lines):
        header = _TABLE_DRIVER.search(line)
        if header is not None:
            driver, cuda = header.group("driver"), header.group("cuda")
            continue
        row = _TABLE_ROW.match(line.strip())
        if row is None:
            continue
        second = _TABLE_ROW2.match(lines[number + 1].strip()) if number + 1 < len(lines) else None
        if second is None:
            fail(TOOL, f"line {number + 1}: GPU {row.group('index')} row without its "
                       "temperature/power line (truncated?)")
        gpus.append(_table_gpu(row, second))
    if driver is None:
        fail(TOOL, "table without the 'NVIDIA-SMI ... Driver Version' header line")
    if not gpus and "No running processes" not in text and "Processes" not in text:
        fail(TOOL, "table header but no GPU rows (truncated?)")
    return NvidiaSmiLog(timestamp=None, driver_version=driver, cuda_version=cuda,
                        gpus=tuple(gpus))


def _table_gpu(row: re.Match[str], second: re.Match[str]) -> NvidiaGpu:
    ecc = row.group("ecc")
    uncorrectable = small_int(ecc) if ecc.isdigit() else None
    return NvidiaGpu(
        pci_bus_id=row.group("bus"), index=small_int(row.group("index")),
        product_name=row.group("name").strip(), serial=None, uuid=None, vbios_version=None,
        persistence_mode="Enabled" if row.group("persistence") == "On" else "Disabled",
        performance_state=_value(second.group("perf")), mig_mode=None, ecc_mode=None,
        ecc_volatile=None if uncorrectable is None else EccCounts(None, uncorrectable),
        ecc_aggregate=None, retired_pages_single_bit=None, retired_pages_double_bit=None,
        retired_pages_pending=None, remapped_rows_correctable=None,
        remapped_rows_uncorrectable=None, remapped_rows_pending=None,
        remapped_rows_failure=None, clock_event_reasons={},
        temperature_c=_int_of(second.group("temp")), memory_temperature_c=None,
        slowdown_temperature_c=None, shutdown_temperature_c=None,
        power_draw_w=_float_of(second.group("power")), power_limit_w=_float_of(second.group("cap")),
        graphics_clock_mhz=None, sm_clock_mhz=None, memory_clock_mhz=None,
        max_graphics_clock_mhz=None, max_memory_clock_mhz=None, pcie_gen_current=None,
        pcie_gen_max=None, pcie_width_current=None, pcie_width_max=None, pcie_replays=None,
    )


# --- one GPU from the common tree --------------------------------------------------------

_Path = tuple[str, ...]

_PATHS: dict[str, tuple[_Path, ...]] = {
    "product_name": (("product_name",),),
    "serial": (("serial",), ("serial_number",)),
    "uuid": (("uuid",), ("gpu_uuid",)),
    "bus_id": (("pci", "pci_bus_id"), ("pci", "bus_id")),
    "minor": (("minor_number",),),
    "vbios": (("vbios_version",),),
    "persistence": (("persistence_mode",),),
    "pstate": (("performance_state",),),
    "mig": (("mig_mode", "current_mig"), ("mig_mode", "current")),
    "ecc_mode": (("ecc_mode", "current_ecc"), ("ecc_mode", "current")),
    "retired_sbe": (("retired_pages", "multiple_single_bit_retirement", "retired_count"),
                    ("retired_pages", "single_bit_ecc")),
    "retired_dbe": (("retired_pages", "double_bit_retirement", "retired_count"),
                    ("retired_pages", "double_bit_ecc")),
    "retired_pending": (("retired_pages", "pending_retirement"),
                        ("retired_pages", "pending_blacklist"),
                        ("retired_pages", "pending_page_retirement"),
                        ("retired_pages", "pending_page_blacklist")),
    "remap_corr": (("remapped_rows", "remapped_row_corr"),
                   ("remapped_rows", "correctable_error")),
    "remap_unc": (("remapped_rows", "remapped_row_unc"),
                  ("remapped_rows", "uncorrectable_error")),
    "remap_pending": (("remapped_rows", "remapped_row_pending"), ("remapped_rows", "pending")),
    "remap_failure": (("remapped_rows", "remapped_row_failure"),
                      ("remapped_rows", "remapping_failure_occurred")),
    "temp": (("temperature", "gpu_temp"), ("temperature", "gpu_current_temp")),
    "mem_temp": (("temperature", "memory_temp"), ("temperature", "memory_current_temp")),
    "slow_temp": (("temperature", "gpu_temp_slow_threshold"),
                  ("temperature", "gpu_slowdown_temp")),
    "shutdown_temp": (("temperature", "gpu_temp_max_threshold"),
                      ("temperature", "gpu_shutdown_temp")),
    "power": (("gpu_power_readings", "power_draw"), ("power_readings", "power_draw"),
              ("gpu_power_readings", "instantaneous_power_draw"),
              ("gpu_power_readings", "average_power_draw")),
    "power_limit": (("gpu_power_readings", "current_power_limit"),
                    ("power_readings", "power_limit"),
                    ("power_readings", "enforced_power_limit")),
    "clock_gr": (("clocks", "graphics_clock"), ("clocks", "graphics")),
    "clock_sm": (("clocks", "sm_clock"), ("clocks", "sm")),
    "clock_mem": (("clocks", "mem_clock"), ("clocks", "memory")),
    "max_gr": (("max_clocks", "graphics_clock"), ("max_clocks", "graphics")),
    "max_mem": (("max_clocks", "mem_clock"), ("max_clocks", "memory")),
    "gen_cur": (("pci", "pci_gpu_link_info", "pcie_gen", "current_link_gen"),
                ("pci", "gpu_link_info", "pcie_generation", "current")),
    "gen_max": (("pci", "pci_gpu_link_info", "pcie_gen", "max_link_gen"),
                ("pci", "gpu_link_info", "pcie_generation", "max")),
    "width_cur": (("pci", "pci_gpu_link_info", "link_widths", "current_link_width"),
                  ("pci", "gpu_link_info", "link_width", "current")),
    "width_max": (("pci", "pci_gpu_link_info", "link_widths", "max_link_width"),
                  ("pci", "gpu_link_info", "link_width", "max")),
    "replays": (("pci", "replay_counter"), ("pci", "replays_since_reset")),
}

_REASON_PREFIXES = ("clocks_event_reason_", "clocks_throttle_reason_")
_REASON_ALIASES = {"idle": "gpu_idle", "display_clock_setting": "display_clocks_setting"}


def _gpu(tree: Tree, bus_id: str | None, index: int | None, where: str) -> NvidiaGpu:
    def text(name: str) -> str | None:
        for path in _PATHS[name]:
            value = _at(tree, path)
            if isinstance(value, dict):
                fail(TOOL, f"{where}: {'.'.join(path)} is a section, expected a value")
            if value is not None:
                return _value(value)
        return None

    def number(name: str) -> int | None:
        return _int_of(text(name))

    if text("product_name") is None:
        fail(TOOL, f"{where}: no product name (truncated?)")
    ecc = _at(tree, ("ecc_errors",))
    minor = number("minor")
    return NvidiaGpu(
        pci_bus_id=text("bus_id") or bus_id,
        index=index if index is not None else minor,
        product_name=text("product_name"),
        serial=text("serial"),
        uuid=text("uuid"),
        vbios_version=text("vbios"),
        persistence_mode=text("persistence"),
        performance_state=text("pstate"),
        mig_mode=text("mig"),
        ecc_mode=text("ecc_mode"),
        ecc_volatile=_ecc(ecc.get("volatile") if isinstance(ecc, dict) else None),
        ecc_aggregate=_ecc(ecc.get("aggregate") if isinstance(ecc, dict) else None),
        retired_pages_single_bit=number("retired_sbe"),
        retired_pages_double_bit=number("retired_dbe"),
        retired_pages_pending=_yes_no(text("retired_pending")),
        remapped_rows_correctable=number("remap_corr"),
        remapped_rows_uncorrectable=number("remap_unc"),
        remapped_rows_pending=_yes_no(text("remap_pending")),
        remapped_rows_failure=_yes_no(text("remap_failure")),
        clock_event_reasons=_reasons(tree),
        temperature_c=number("temp"),
        memory_temperature_c=number("mem_temp"),
        slowdown_temperature_c=number("slow_temp"),
        shutdown_temperature_c=number("shutdown_temp"),
        power_draw_w=_float_of(text("power")),
        power_limit_w=_float_of(text("power_limit")),
        graphics_clock_mhz=number("clock_gr"),
        sm_clock_mhz=number("clock_sm"),
        memory_clock_mhz=number("clock_mem"),
        max_graphics_clock_mhz=number("max_gr"),
        max_memory_clock_mhz=number("max_mem"),
        pcie_gen_current=number("gen_cur"),
        pcie_gen_max=number("gen_max"),
        pcie_width_current=number("width_cur"),
        pcie_width_max=number("width_max"),
        pcie_replays=number("replays"),
    )


def _at(tree: Tree, path: _Path) -> str | Tree | None:
    node: str | Tree | None = tree
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _ecc(node: str | Tree | None) -> EccCounts | None:
    """Sum one scope's counters: SRAM/DRAM (correctable, uncorrectable*) or single/double bit."""
    if not isinstance(node, dict):
        return None
    details: dict[str, int] = {}
    correctable: int | None = None
    uncorrectable: int | None = None
    for key, value in node.items():
        if isinstance(value, dict):  # old schema: single_bit / double_bit per memory unit
            total = _int_of(_str_of(value.get("total")))
            for unit, count in value.items():
                number = _int_of(_str_of(count))
                if number is not None:
                    details[f"{key}.{unit}"] = number
            if total is None:
                continue
            if "double" in key:
                uncorrectable = (uncorrectable or 0) + total
            elif "single" in key:
                correctable = (correctable or 0) + total
            continue
        number = _int_of(value)
        if number is None:
            continue
        details[key] = number
        if "uncorrectable" in key:
            uncorrectable = (uncorrectable or 0) + number
        elif "correctable" in key:
            correctable = (correctable or 0) + number
    if correctable is None and uncorrectable is None:
        return None
    return EccCounts(correctable, uncorrectable, details)


def _reasons(tree: Tree) -> dict[str, bool]:
    node = _at(tree, ("clocks_event_reasons",))
    if not isinstance(node, dict):
        node = _at(tree, ("clocks_throttle_reasons",))
    if not isinstance(node, dict):
        return {}
    reasons: dict[str, bool] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            continue
        name = key
        for prefix in _REASON_PREFIXES:
            name = name.removeprefix(prefix)
        name = _REASON_ALIASES.get(name, name)
        state = value.strip().lower()
        if state in ("active", "not active"):
            reasons[name] = state == "active"
    return reasons


def _value(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return None if text.lower() in _NOT_A_VALUE else text


def _str_of(value: str | Tree | None) -> str | None:
    return _value(value) if isinstance(value, str) else None


def _int_of(value: str | Tree | None) -> int | None:
    """'41 C', '16x', '2560 bank(s)', '0' -> int; N/A and other text -> None."""
    text = _str_of(value)
    if text is None:
        return None
    match = _NUMBER.match(text)
    if match is None or "." in match.group():
        return None
    digits = match.group().lstrip("+-")
    number = small_int(digits)
    if number is None:
        return None
    return -number if match.group().startswith("-") else number


def _float_of(value: str | Tree | None) -> float | None:
    text = _str_of(value)
    if text is None:
        return None
    match = _NUMBER.match(text)
    return None if match is None or len(match.group()) > 40 else float(match.group())


def _yes_no(text: str | None) -> bool | None:
    if text is None:
        return None
    lowered = text.lower()
    return True if lowered == "yes" else False if lowered == "no" else None
