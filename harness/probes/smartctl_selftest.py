"""`smartctl -c -l selftest -j` -> SelfTestStatus: is a self-test running, and how far is it.

The health report (harness.probes.smartctl) reads finished self-tests from the log; this
reads the one in progress, which each protocol reports its own way:
- ATA: `ata_smart_data.self_test.status.value`, high nibble 0xF = in progress, low nibble
  = tenths remaining (smartctl also writes `remaining_percent`);
- NVMe: `nvme_self_test_log.current_self_test_operation.value` != 0 = in progress, with
  `current_self_test_completion_percent`; no self-test log at all = the controller has no
  Device Self-test command (QEMU's, many client drives);
- SCSI: the newest `scsi_self_test_N` entry with result 15 = in progress.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.probes._common import JsonDict, expect_dict, fail, load_json, opt_dict, opt_int

TOOL = "smartctl -c -l selftest"

_IN_PROGRESS = 0xF
_SCSI_IN_PROGRESS = 15


@dataclass(frozen=True)
class SelfTestStatus:
    supported: bool | None  # None: the output does not say
    running: bool
    remaining_pct: int | None


def parse_self_test_status(text: str) -> SelfTestStatus:
    data = expect_dict(TOOL, load_json(TOOL, text), "top level")
    if "smartctl" not in data:
        fail(TOOL, "no 'smartctl' block (not smartctl -j output?)")
    ata = opt_dict(TOOL, data, "ata_smart_data", "top level")
    if ata is not None:
        return _ata(ata)
    nvme = opt_dict(TOOL, data, "nvme_self_test_log", "top level")
    device = opt_dict(TOOL, data, "device", "top level") or {}
    if nvme is not None:
        operation = opt_dict(TOOL, nvme, "current_self_test_operation",
                             "nvme_self_test_log") or {}
        code = opt_int(TOOL, operation, "value", "current_self_test_operation") or 0
        done = opt_int(TOOL, nvme, "current_self_test_completion_percent",
                       "nvme_self_test_log")
        return SelfTestStatus(True, code != 0,
                              None if code == 0 or done is None else max(0, 100 - done))
    if str(device.get("protocol", "")).lower() == "nvme":
        return SelfTestStatus(False, False, None)
    scsi = opt_dict(TOOL, data, "scsi_self_test_0", "top level")  # the newest entry
    if scsi is not None:
        result = opt_dict(TOOL, scsi, "result", "scsi_self_test_0") or {}
        result_code = opt_int(TOOL, result, "value", "scsi_self_test_0.result")
        return SelfTestStatus(True, result_code == _SCSI_IN_PROGRESS, None)
    return SelfTestStatus(None, False, None)


def _ata(ata: JsonDict) -> SelfTestStatus:
    capabilities = opt_dict(TOOL, ata, "capabilities", "ata_smart_data") or {}
    supported = capabilities.get("self_tests_supported")
    self_test = opt_dict(TOOL, ata, "self_test", "ata_smart_data") or {}
    status = opt_dict(TOOL, self_test, "status", "ata_smart_data.self_test") or {}
    value = opt_int(TOOL, status, "value", "ata_smart_data.self_test.status")
    running = value is not None and value >> 4 == _IN_PROGRESS
    remaining = opt_int(TOOL, status, "remaining_percent", "ata_smart_data.self_test.status")
    if running and remaining is None and value is not None:
        remaining = (value & 0xF) * 10
    return SelfTestStatus(supported if isinstance(supported, bool) else None, running,
                          remaining if running else None)

