"""Vetting profiles: how long and how hard each stage runs.

A profile is plain data. The inventory may override any parameter for a group or
host (`vet_stages` for every profile, `vet_profiles.<name>` for one), and the
effective values are recorded with the run so a report says exactly what ran.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from harness.errors import VetError
from harness.models import Host

Params = dict[str, Any]

_QUICK: dict[str, Params] = {
    "inventory": {"timeout_s": 120},
    "spec": {"fail_on": "critical"},
    "smart": {
        # A self-test on every disk that answers SMART: "short" (about 2 min on real disks,
        # at once on QEMU's), "long" (hours on large HDDs) or "none".
        "self_test": "short",
        "self_test_timeout_s": 900,  # deadline for all disks' self-tests together
        "self_test_poll_s": 10,  # how often the running self-test's progress is read
        # SmartThresholds.strict: SCSI grown defects fail instead of warn.
        "strict": False,
        # Disks smartctl cannot read (virtio, RAID volumes) are reported; True fails them.
        "fail_unreadable": False,
        # Compare the counters after the last stress stage (harness/smart_snapshot.py).
        "compare_after_stress": True,
    },
    "cpu": {
        "duration_s": 20,
        "stressors": ["cpu", "matrix", "cache"],
        "workers_per_stressor": 0,  # 0: one worker per online CPU, as stress-ng counts
        "max_bogo_ops_drop_pct": None,
        # Thermal throttling logged during the run fails the stage (False: it warns).
        "thermal_fails": True,
        # Seconds between temperature samples (thermal zones, hwmon) while stress-ng runs.
        "temperature_sample_s": 5,
    },
    "memory": {
        "tool": "stress-ng",  # or "memtester" (one pass; its duration follows the size)
        "duration_s": 20,
        # Tested size = MemAvailable minus this reserve (at most half of it), left for the
        # OS, sshd and stress-ng itself (too little and the OOM killer ends stressors).
        "reserve_mib": 512,
        "max_mib": 0,  # cap on the tested size (0: no cap)
        "workers": 0,  # stress-ng --vm workers; 0: one per online CPU
        "vm_method": "all",  # stress-ng --vm-method
        "ce_warn_above": 0,  # EdacThresholds.ce_warn_above (correctable errors warn)
        "corrected_warn_above": 10,  # KernelLogThresholds.corrected_warn_above
    },
    "storage": {
        # A file in scratch_dir, written, verified and removed (never the disk itself).
        "scratch_dir": "/var/tmp",
        "size_mib": 64,
        "runtime_s": 10,
        "block_size": "4k",
        "iodepth": 8,
        "verify": "crc32c",
        # Read-only pass over the first MiB of every disk (0: off). Reading never
        # changes a disk; it finds the sectors a dying disk can no longer return.
        "read_scan_mib": 0,
        # "non-destructive" (scratch file and read scan only) or "destructive": fio
        # writes and verifies the expected disks themselves, behind four gates
        # (harness/safety.py). Only for hosts whose disks may be wiped.
        "mode": "non-destructive",
        "write_mib": 256,  # per disk, from its start; 0: the whole disk
        "wipe_probe_override": [],  # serials the operator allows to overwrite despite data
    },
    "network": {
        "duration_s": 5,
        "streams": 1,
        "min_mbps": 100.0,
        "server_address": "127.0.0.1",  # the controller's address as the host sees it
        # Pass at this fraction of the link speed ethtool reports; min_mbps when the speed
        # is unknown (virtio, loopback).
        "link_fraction": 0.8,
        # An expected NIC whose link is slower than its vet_spec speed_mbps: "fail" or "warn".
        "slow_link": "fail",
    },
    "gpu": {
        "duration_s": 30,  # load time with gpu-burn or load_command
        # A CUDA load program to use when gpu_burn is absent; {duration_s} is replaced.
        "load_command": None,
        "sample_s": 5,  # nvidia-smi -q -l interval while the load runs
        "throttle_fails": False,  # GpuThresholds.throttle_fails: HW/thermal slowdown fails
    },
    "psu": {
        # Where sensors come from: "auto" (in-band if the host has an IPMI device, else the
        # BMC over the network with the host's vet_power ipmi parameters), "inband", "lan".
        "source": "auto",
        "inband_devices": ["/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0"],
        "timeout_s": 60,
        # A host without a readable BMC: skipped (False) or failed (True).
        "require_bmc": False,
    },
}

_STANDARD_OVERRIDES: dict[str, Params] = {
    "cpu": {"duration_s": 600},
    "memory": {"duration_s": 600},
    "gpu": {"duration_s": 600},
    "storage": {"size_mib": 4096, "runtime_s": 300, "read_scan_mib": 4096, "write_mib": 8192},
    "network": {"duration_s": 60, "streams": 4},
}

_BURNIN_OVERRIDES: dict[str, Params] = {
    "cpu": {"duration_s": 4 * 3600},
    "smart": {"self_test": "long", "self_test_timeout_s": 12 * 3600, "self_test_poll_s": 60},
    "memory": {"duration_s": 4 * 3600},
    "gpu": {"duration_s": 4 * 3600},
    "storage": {"size_mib": 16384, "runtime_s": 3600, "read_scan_mib": 65536, "write_mib": 0},
    "network": {"duration_s": 600, "streams": 4},
}


def _overlay(base: Mapping[str, Params], overrides: Mapping[str, Mapping[str, Any]]) -> dict[
    str, Params
]:
    merged = copy.deepcopy(dict(base))
    for stage, params in overrides.items():
        merged.setdefault(stage, {}).update(copy.deepcopy(dict(params)))
    return merged


PROFILES: Mapping[str, Mapping[str, Params]] = {
    "quick": _QUICK,
    "standard": _overlay(_QUICK, _STANDARD_OVERRIDES),
    "burnin": _overlay(_QUICK, _BURNIN_OVERRIDES),
}

DEFAULT_PROFILE = "quick"


def check_profile(name: str) -> None:
    if name not in PROFILES:
        raise VetError(
            f"profile {name!r} is unknown; choose one of {', '.join(PROFILES)} with --profile"
        )


def override_problems(host: Host) -> list[str]:
    """Unknown parameter names in a host's overrides (typos would silently do nothing).

    Stages without parameters in the profiles yet are not checked.
    """
    known = {stage: set().union(*(PROFILES[p].get(stage, {}) for p in PROFILES))
             for stage in {s for p in PROFILES.values() for s in p}}
    layers = [("vet_stages", host.stage_params)] + [
        (f"vet_profiles.{name}", stages) for name, stages in host.profile_params.items()]
    problems = []
    for where, stages in layers:
        for stage, params in stages.items():
            for key in sorted(set(params) - known.get(stage, set(params))):
                problems.append(
                    f"host {host.name}: {where}.{stage}.{key} is not a parameter of the "
                    f"{stage} stage; known: {', '.join(sorted(known[stage]))}")
    return problems


def effective_params(profile: str, host: Host) -> dict[str, Params]:
    """Profile defaults, then the host's vet_stages, then its vet_profiles.<profile>."""
    check_profile(profile)
    merged = _overlay(PROFILES[profile], host.stage_params)
    return _overlay(merged, host.profile_params.get(profile, {}))
