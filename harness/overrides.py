"""Operator overrides for one run (`--override NAME`), as `vet retry` passes them.

An override loosens one safety gate for the hosts of one run only, so the inventory
stays strict; the plugin records each use in the run store with the operator's name.
Each override is a named change to the effective stage parameters, which is all a
stage reads, so no stage needs to know that overrides exist.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.errors import VetError
from harness.models import Host
from harness.profiles import Params


@dataclass(frozen=True)
class Override:
    name: str
    stage: str
    help: str
    apply: Callable[[Host, dict[str, Params]], None]


def _wipe_probe(host: Host, params: dict[str, Params]) -> None:
    storage = params.setdefault("storage", {})
    serials = {*storage.get("wipe_probe_override", ()), *(d.serial for d in host.spec.disks)}
    storage["wipe_probe_override"] = sorted(serials)


#: The overrides an operator may ask for; the one table to extend.
OVERRIDES: dict[str, Override] = {
    "wipe-probe": Override(
        "wipe-probe", "storage",
        "destructive storage may write the host's expected disks although wipefs found data "
        "on them (storage.wipe_probe_override = every expected disk's serial)",
        _wipe_probe),
}


def check_overrides(names: Sequence[str]) -> None:
    """Raise a VetError naming any override vet does not have."""
    unknown = [n for n in names if n not in OVERRIDES]
    if unknown:
        raise VetError(f"--override {', '.join(unknown)}: not an override vet has; choose "
                       f"from: {', '.join(OVERRIDES)}")


def apply_overrides(host: Host, params: dict[str, Params],
                    names: Sequence[str]) -> dict[str, Params]:
    """`params` with the named overrides applied (the original is left as it was)."""
    if not names:
        return params
    result = copy.deepcopy(params)
    for name in names:
        OVERRIDES[name].apply(host, result)
    return result
