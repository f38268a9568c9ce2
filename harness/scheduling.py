"""xdist scheduling that keeps every test of one host on one worker, in order.

pytest-xdist's `--dist loadgroup` silently ignores `xdist_group` marks under pytest
9.2 (xdist issue #1386), so vet does not rely on it: this scheduler makes the host
the unit of work. A worker receives all of a host's tests at once and runs them in
collection order, which the plugin has already sorted into pipeline order.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from xdist.scheduler import LoadScopeScheduling


def host_of_nodeid(nodeid: str, host_names: Iterable[str]) -> str | None:
    """The host a test id belongs to: `suites/test_cpu.py::test_stress[node07]` -> node07.

    Host names may contain '-', so the longest host name that the parameter id equals
    or starts with (followed by '-') wins.
    """
    last = nodeid.rsplit("::", 1)[-1]
    if "[" not in last or not last.endswith("]"):
        return None
    param_id = last[last.index("[") + 1 : -1]
    best: str | None = None
    for name in host_names:
        if (param_id == name or param_id.startswith(name + "-")) and len(name) > len(best or ""):
            best = name
    return best


class HostScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """One work unit per host; tests of no host each form their own unit."""

    def __init__(self, config: pytest.Config, log: object, host_names: Iterable[str]) -> None:
        super().__init__(config, log)
        self.host_names = tuple(host_names)

    def _split_scope(self, nodeid: str) -> str:
        host = host_of_nodeid(nodeid, self.host_names)
        return f"host:{host}" if host else nodeid
