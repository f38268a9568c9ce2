"""`smartctl --scan-open -j` -> the devices smartctl can address, with the -d type each needs.

lsblk lists the disks the kernel sees; behind a hardware RAID controller those are volumes,
and only smartctl's scan names the member disks (`/dev/bus/0 -d megaraid,3`). The SMART
stage merges both views (harness.smart). A device the scan could not open carries the
reason in `open_error`.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.probes._common import expect_dict, expect_list, fail, load_json, opt_str

TOOL = "smartctl --scan-open"


@dataclass(frozen=True)
class ScanDevice:
    name: str  # the device path smartctl takes, e.g. /dev/sda, /dev/nvme0, /dev/bus/0
    type: str | None  # the -d value, e.g. sat, nvme, megaraid,3
    protocol: str | None  # ATA, NVMe, SCSI
    info_name: str | None
    open_error: str | None


def parse_smartctl_scan(text: str) -> list[ScanDevice]:
    data = expect_dict(TOOL, load_json(TOOL, text), "top level")
    if "smartctl" not in data:
        fail(TOOL, "no 'smartctl' block (not smartctl -j output?)")
    devices = data.get("devices")
    if devices is None:
        return []  # nothing found: smartctl leaves the list out
    found = []
    for index, value in enumerate(expect_list(TOOL, devices, "devices")):
        where = f"devices[{index}]"
        entry = expect_dict(TOOL, value, where)
        name = opt_str(TOOL, entry, "name", where)
        if not name:
            fail(TOOL, f"{where}: a device without a name")
        found.append(ScanDevice(name=name, type=opt_str(TOOL, entry, "type", where),
                                protocol=opt_str(TOOL, entry, "protocol", where),
                                info_name=opt_str(TOOL, entry, "info_name", where),
                                open_error=opt_str(TOOL, entry, "open_error", where)))
    return found
