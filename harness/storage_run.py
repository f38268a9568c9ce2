"""fio on one disk, read back the same way by every storage check (read scan, write-verify).

fio that dies before writing its JSON (a missing device, a bad option, a kernel oops) is
itself a finding about that disk, not a crash of the stage: the check lists it beside the
other disks' failures and goes on with the next disk.
"""

from __future__ import annotations

from harness.host import HostUnderTest
from harness.models import CommandResult
from harness.probes import ParseError
from harness.probes.fio import FioResult, parse_fio


def disk_fio(host: HostUnderTest, result: CommandResult, disk: str,
             record_as: str) -> FioResult | str:
    """fio's parsed result, recorded as evidence `record_as`; or, where fio printed no
    result, the failure sentence for `disk` (its path and serial) with fio's last words."""
    try:
        fio = parse_fio(result.stdout)
    except ParseError:
        return (f"{disk}: fio exited {result.exit_status}: "
                f"{(result.stderr or result.stdout)[-200:]}")
    host.record(record_as, fio)
    return fio


def had_errors(fio: FioResult, result: CommandResult) -> bool:
    """Any sign of a failed disk: verify failures, I/O errors, a job error, a non-zero exit."""
    return bool(fio.verify_errors or fio.total_errors or fio.jobs[0].error
                or result.exit_status != 0)
