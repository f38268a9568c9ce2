"""Inventory: collect what the host really is, and keep it."""

from __future__ import annotations

import pytest

from harness.collect import collect_raw, merge
from harness.host import HostUnderTest

pytestmark = [pytest.mark.stage, pytest.mark.inventory]


def test_collect_hardware_inventory(host: HostUnderTest) -> None:
    raw = collect_raw(host, timeout=host.params["timeout_s"])
    hardware = merge(raw)
    host.facts["hardware"] = hardware
    host.record("hardware inventory", hardware)
    if raw.notes:
        host.evidence.attach("collection notes", "\n".join(raw.notes))
    assert hardware.cpu.threads, "lscpu reported no CPUs"
    assert hardware.memory_total_bytes, "no source reported the memory size"
    host.measure("cpu_threads", hardware.cpu.threads, "count")
    host.measure("memory_total", hardware.memory_total_bytes, "bytes")
    host.measure("disks", len(hardware.disks), "count")
