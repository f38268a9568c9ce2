"""lscpu -J: CPU model and counts, the most reliable source of core/thread totals.

lshw and dmidecode report per-socket figures that VMs and some BIOSes leave empty;
lscpu reads the kernel's topology, which is what the workload will actually get.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness.probes import ParseError


@dataclass(frozen=True)
class LscpuInfo:
    model_name: str | None
    vendor: str | None
    cpus: int | None
    sockets: int | None
    cores_per_socket: int | None
    threads_per_core: int | None
    fields: dict[str, str]

    @property
    def cores(self) -> int | None:
        if self.sockets is None or self.cores_per_socket is None:
            return None
        return self.sockets * self.cores_per_socket


def _walk(entries: Any) -> Iterator[tuple[str, str]]:
    """Flatten lscpu's entries; util-linux >= 2.37 may nest them under `children`."""
    if not isinstance(entries, list):
        raise ParseError("lscpu", "expected a list of {field, data} entries under 'lscpu'")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("field"), str):
            raise ParseError("lscpu", f"entry without a 'field' string: {entry!r:.80}")
        data = entry.get("data")
        yield entry["field"].rstrip(":").strip(), "" if data is None else str(data)
        if "children" in entry:
            yield from _walk(entry["children"])


def _int(fields: dict[str, str], key: str) -> int | None:
    value = fields.get(key, "").strip()
    return int(value) if value.isdigit() else None


def parse_lscpu(text: str) -> LscpuInfo:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError("lscpu", f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(document, dict) or "lscpu" not in document:
        raise ParseError("lscpu", "no 'lscpu' key: was it run with -J?")
    fields = dict(_walk(document["lscpu"]))
    return LscpuInfo(
        model_name=fields.get("Model name") or None,
        vendor=fields.get("Vendor ID") or None,
        cpus=_int(fields, "CPU(s)"),
        sockets=_int(fields, "Socket(s)"),
        cores_per_socket=_int(fields, "Core(s) per socket"),
        threads_per_core=_int(fields, "Thread(s) per core"),
        fields=fields,
    )
