"""Expected-vs-actual comparison of a host's hardware, with a severity per item.

Severity rules (why): anything missing or smaller than promised is critical, since
the buyer did not get what was paid for; more than promised or a different model
of the same size is a warning worth a look; extra parts are info.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from harness.models import ExpectedSpec, HardwareInventory, Severity, SpecDifference

GIB = 1024**3
GB = 1000**3


def _norm(text: str | None) -> str:
    return re.sub(r"\s+", " ", (text or "").replace("(R)", "").replace("(TM)", "")).strip().lower()


def _row(item: str, expected: object, actual: object, severity: Severity | None,
         message: str) -> SpecDifference:
    shown_actual = "(not found)" if actual is None else str(actual)
    return SpecDifference(item, str(expected), shown_actual, severity, message)


def _compare_count(item: str, expected: int | None, actual: int | None) -> Iterable[SpecDifference]:
    if expected is None:
        return
    if actual is None:
        yield _row(item, expected, None, Severity.CRITICAL, f"{item} could not be determined")
    elif actual < expected:
        yield _row(item, expected, actual, Severity.CRITICAL,
                   f"{item}: {actual} found, {expected} expected")
    elif actual > expected:
        yield _row(item, expected, actual, Severity.WARNING,
                   f"{item}: {actual} found, more than the {expected} expected")
    else:
        yield _row(item, expected, actual, None, "matches")


def _compare_cpu(spec: ExpectedSpec, actual: HardwareInventory) -> Iterable[SpecDifference]:
    cpu = spec.cpu
    if cpu.model is not None:
        if actual.cpu.model is None:
            yield _row("cpu.model", cpu.model, None, Severity.CRITICAL, "CPU model not reported")
        elif _norm(cpu.model) in _norm(actual.cpu.model):
            yield _row("cpu.model", cpu.model, actual.cpu.model, None, "matches")
        else:
            yield _row("cpu.model", cpu.model, actual.cpu.model, Severity.CRITICAL,
                       "a different CPU model is installed")
    yield from _compare_count("cpu.sockets", cpu.sockets, actual.cpu.sockets)
    yield from _compare_count("cpu.cores", cpu.cores, actual.cpu.cores)
    yield from _compare_count("cpu.threads", cpu.threads, actual.cpu.threads)


def _compare_memory(spec: ExpectedSpec, actual: HardwareInventory) -> Iterable[SpecDifference]:
    mem = spec.memory
    if mem.total_gib is not None:
        found = actual.memory_total_bytes
        if found is None:
            yield _row("memory.total_gib", mem.total_gib, None, Severity.CRITICAL,
                       "memory size could not be determined")
        else:
            found_gib = round(found / GIB, 2)
            low = mem.total_gib * (1 - mem.tolerance_pct / 100)
            high = mem.total_gib * (1 + mem.tolerance_pct / 100)
            if found_gib < low:
                yield _row("memory.total_gib", mem.total_gib, found_gib, Severity.CRITICAL,
                           f"{found_gib} GiB found, below {mem.total_gib} GiB "
                           f"- {mem.tolerance_pct:g} %")
            elif found_gib > high:
                yield _row("memory.total_gib", mem.total_gib, found_gib, Severity.WARNING,
                           f"{found_gib} GiB found, more than {mem.total_gib} GiB expected")
            else:
                yield _row("memory.total_gib", mem.total_gib, found_gib, None,
                           f"matches within {mem.tolerance_pct:g} %")
    if mem.dimm_count is not None:
        yield from _compare_count("memory.dimm_count", mem.dimm_count,
                                  len(actual.dimms) if actual.dimms else None)
    if mem.dimm_size_gib is not None and actual.dimms:
        odd = [d for d in actual.dimms if round(d.size_bytes / GIB) != round(mem.dimm_size_gib)]
        if odd:
            listed = ", ".join(f"{d.locator}={d.size_bytes / GIB:g} GiB" for d in odd)
            yield _row("memory.dimm_size_gib", mem.dimm_size_gib, listed, Severity.CRITICAL,
                       "DIMMs of another size are installed")
        else:
            yield _row("memory.dimm_size_gib", mem.dimm_size_gib, mem.dimm_size_gib, None,
                       "matches")


def _compare_disks(spec: ExpectedSpec, actual: HardwareInventory) -> Iterable[SpecDifference]:
    by_serial = {d.serial.strip().lower(): d for d in actual.disks if d.serial}
    for expected in spec.disks:
        item = f"disk {expected.serial}"
        disk = by_serial.pop(expected.serial.strip().lower(), None)
        if disk is None:
            yield _row(item, "present", None, Severity.CRITICAL,
                       f"expected disk with serial {expected.serial} is missing")
            continue
        yield _row(item, "present", disk.name, None, "present")
        if expected.model is not None and _norm(expected.model) not in _norm(disk.model):
            yield _row(f"{item} model", expected.model, disk.model, Severity.WARNING,
                       "disk model differs")
        if expected.size_gb is not None and disk.size_bytes is not None:
            # Compared unrounded: rounding first turned a 1.07 GB disk into 1.1, "larger
            # than expected", and could make a disk within 1 % look critically small.
            size_gb = disk.size_bytes / GB
            shown = float(f"{size_gb:.3g}") if size_gb < 100 else round(size_gb, 1)
            if size_gb < expected.size_gb * 0.99:
                yield _row(f"{item} size_gb", expected.size_gb, shown, Severity.CRITICAL,
                           "disk is smaller than expected")
            elif size_gb > expected.size_gb * 1.01:
                yield _row(f"{item} size_gb", expected.size_gb, shown, Severity.WARNING,
                           "disk is larger than expected")
    if spec.disks:
        for disk in by_serial.values():
            yield _row(f"disk {disk.serial}", "(not in spec)", disk.name, Severity.INFO,
                       "disk present that the spec does not list")


def _compare_nics(spec: ExpectedSpec, actual: HardwareInventory) -> Iterable[SpecDifference]:
    by_mac = {n.mac.lower(): n for n in actual.nics if n.mac}
    for expected in spec.nics:
        item = f"nic {expected.mac}"
        nic = by_mac.get(expected.mac.lower())
        if nic is None:
            yield _row(item, "present", None, Severity.CRITICAL,
                       f"expected NIC with MAC {expected.mac} is missing")
            continue
        yield _row(item, "present", nic.name, None, "present")
        if expected.speed_mbps is not None:
            if nic.speed_mbps is None:
                yield _row(f"{item} speed_mbps", expected.speed_mbps, None, Severity.WARNING,
                           "link speed unknown (no link?)")
            elif nic.speed_mbps < expected.speed_mbps:
                yield _row(f"{item} speed_mbps", expected.speed_mbps, nic.speed_mbps,
                           Severity.WARNING, "link is slower than expected (cable, switch port?)")


def _compare_gpus(spec: ExpectedSpec, actual: HardwareInventory) -> Iterable[SpecDifference]:
    for expected in spec.gpus:
        found = sum(1 for g in actual.gpus if _norm(expected.model) in _norm(g.model))
        yield from _compare_count(f"gpu {expected.model}", expected.count, found)


def compare(spec: ExpectedSpec, actual: HardwareInventory) -> list[SpecDifference]:
    """Every checked item of the spec, matches included, in a stable order."""
    rows: list[SpecDifference] = []
    rows += _compare_cpu(spec, actual)
    rows += _compare_memory(spec, actual)
    rows += _compare_disks(spec, actual)
    rows += _compare_nics(spec, actual)
    rows += _compare_gpus(spec, actual)
    rows += _compare_count("psu_count", spec.psu_count, actual.psu_count)
    if spec.bios_version is not None:
        same = _norm(spec.bios_version) == _norm(actual.bios_version)
        rows.append(_row("bios_version", spec.bios_version, actual.bios_version,
                         None if same else Severity.WARNING,
                         "matches" if same else "BIOS version differs"))
    return rows


def critical(rows: Iterable[SpecDifference]) -> list[SpecDifference]:
    return [r for r in rows if r.severity is Severity.CRITICAL]


def diff_table_html(rows: Iterable[SpecDifference]) -> str:
    """The comparison as a small standalone HTML table for the report."""
    import html

    colour = {Severity.CRITICAL: "#f8d7da", Severity.WARNING: "#fff3cd", Severity.INFO: "#e2e3e5"}
    body = []
    for r in rows:
        bg = colour.get(r.severity, "#d4edda") if r.severity else "#d4edda"
        cells = (r.item, r.expected, r.actual, r.severity or "ok", r.message)
        body.append(f'<tr style="background:{bg}">'
                    + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("item", "expected", "actual", "severity", "message"))
    return ('<table border="1" cellpadding="4" style="border-collapse:collapse;'
            f'font-family:sans-serif"><tr>{head}</tr>{"".join(body)}</table>')


def diff_table_text(rows: Iterable[SpecDifference]) -> str:
    """The comparison as aligned text, for terminals and logs."""
    table = [("item", "expected", "actual", "severity", "message")]
    table += [(r.item, r.expected, r.actual, str(r.severity or "ok"), r.message) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
        for row in table
    )
