"""EDAC memory error counters from sysfs -> EdacCounters.

The stage collects them with one command, EDAC_COMMAND: `grep -sH .` over the counter files
of every memory controller (mcN) and of every DIMM or rank below it (drivers expose one or the
other). Each output line is "PATH:VALUE". The globs are spelled out (no brace expansion) so
any POSIX shell runs it; -s hides the "No such file" of the kind a driver does not expose.

Empty output is a valid result: no EDAC driver is loaded (a VM, or a platform without
support), so memory errors cannot be counted there. That is a fact about the host, which the
judge reports as inconclusive. Any other line is not this command's output: ParseError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.probes._common import fail, small_int

TOOL = "edac"

_MC = "/sys/devices/system/edac/mc/mc*"
EDAC_COMMAND = "grep -sH . " + " ".join(
    [f"{_MC}/{name}" for name in ("mc_name", "size_mb", "ce_count", "ue_count",
                                  "ce_noinfo_count", "ue_noinfo_count")]
    + [f"{_MC}/{kind}*/{name}" for kind in ("dimm", "rank")
       for name in ("dimm_label", "size", "dimm_ce_count", "dimm_ue_count")]
)

_LINE = re.compile(r"/sys/devices/system/edac/mc/mc(?P<mc>\d{1,4})/(?:(?P<kind>dimm|rank)"
                   r"(?P<index>\d{1,5})/)?(?P<name>[a-z_]+):(?P<value>.*)")
_CONTROLLER_FILES = ("mc_name", "size_mb", "ce_count", "ue_count", "ce_noinfo_count",
                     "ue_noinfo_count")
_DIMM_FILES = ("dimm_label", "size", "dimm_ce_count", "dimm_ue_count")
_NUMERIC = ("size_mb", "ce_count", "ue_count", "ce_noinfo_count", "ue_noinfo_count", "size",
            "dimm_ce_count", "dimm_ue_count")


@dataclass(frozen=True)
class EdacDimm:
    """A DIMM (or a rank, for csrow-style drivers) with its label, e.g. 'CPU_SrcID#0_..._DIMM#0'."""

    controller: int
    kind: str
    index: int
    label: str | None
    size_mb: int | None
    ce_count: int | None
    ue_count: int | None

    @property
    def name(self) -> str:
        return self.label or f"mc{self.controller}/{self.kind}{self.index}"


@dataclass(frozen=True)
class EdacController:
    index: int
    name: str | None
    size_mb: int | None
    ce_count: int | None
    ue_count: int | None
    ce_noinfo_count: int | None
    ue_noinfo_count: int | None
    dimms: tuple[EdacDimm, ...]


@dataclass(frozen=True)
class EdacCounters:
    controllers: tuple[EdacController, ...]

    @property
    def available(self) -> bool:
        """False when no EDAC driver exposes a memory controller."""
        return bool(self.controllers)

    @property
    def ce_total(self) -> int:
        return sum(c.ce_count or 0 for c in self.controllers)

    @property
    def ue_total(self) -> int:
        return sum(c.ue_count or 0 for c in self.controllers)

    def dimm(self, name: str) -> EdacDimm | None:
        return next((d for c in self.controllers for d in c.dimms if d.name == name), None)


def parse_edac(text: str) -> EdacCounters:
    """Parse the output of EDAC_COMMAND ("PATH:VALUE" lines)."""
    controllers: dict[int, dict[str, str]] = {}
    dimms: dict[tuple[int, str, int], dict[str, str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.fullmatch(line.strip())
        if match is None:
            fail(TOOL, f"line {number}: expected '/sys/devices/system/edac/mc/mcN/...:VALUE', "
                       f"got {line.strip()[:80]!r}")
        name, value = match.group("name"), match.group("value").strip()
        mc = int(match.group("mc"))
        if match.group("kind") is None:
            if name not in _CONTROLLER_FILES:
                fail(TOOL, f"line {number}: unexpected controller file {name!r}")
            target = controllers.setdefault(mc, {})
        else:
            if name not in _DIMM_FILES:
                fail(TOOL, f"line {number}: unexpected {match.group('kind')} file {name!r}")
            controllers.setdefault(mc, {})
            key = (mc, match.group("kind"), int(match.group("index")))
            target = dimms.setdefault(key, {})
        if name in _NUMERIC and small_int(value) is None:
            fail(TOOL, f"line {number}: {name} should be a count, got {value[:40]!r}")
        target.setdefault(name, value)
    return EdacCounters(tuple(
        _controller(index, fields, [(key, dimm) for key, dimm in sorted(dimms.items())
                                    if key[0] == index])
        for index, fields in sorted(controllers.items())
    ))


def _controller(index: int, fields: dict[str, str],
                dimms: list[tuple[tuple[int, str, int], dict[str, str]]]) -> EdacController:
    return EdacController(
        index=index,
        name=fields.get("mc_name"),
        size_mb=_count(fields.get("size_mb")),
        ce_count=_count(fields.get("ce_count")),
        ue_count=_count(fields.get("ue_count")),
        ce_noinfo_count=_count(fields.get("ce_noinfo_count")),
        ue_noinfo_count=_count(fields.get("ue_noinfo_count")),
        dimms=tuple(
            EdacDimm(controller=mc, kind=kind, index=number,
                     label=dimm.get("dimm_label") or None, size_mb=_count(dimm.get("size")),
                     ce_count=_count(dimm.get("dimm_ce_count")),
                     ue_count=_count(dimm.get("dimm_ue_count")))
            for (mc, kind, number), dimm in dimms
        ),
    )


def _count(value: str | None) -> int | None:
    return None if value is None else small_int(value)
