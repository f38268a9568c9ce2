"""gpu_burn's output -> per-GPU verdicts (it prints `GPU N: OK` or `GPU N: FAULTY` at the end).

gpu_burn (github.com/wilicc/gpu-burn) compares the results of repeated matrix
multiplications; a GPU that computed wrong answers is FAULTY. Its exit status does not say
which GPU, so the final lines are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.probes._common import fail

TOOL = "gpu_burn"

_RESULT = re.compile(r"^\s*GPU (?P<index>\d{1,3}): (?P<verdict>OK|FAULTY)\b", re.MULTILINE)


@dataclass(frozen=True)
class GpuBurnResult:
    verdicts: tuple[tuple[int, bool], ...]  # (GPU index, computed correctly)

    @property
    def faulty(self) -> tuple[int, ...]:
        return tuple(index for index, ok in self.verdicts if not ok)


def parse_gpu_burn(text: str) -> GpuBurnResult:
    found = {int(m["index"]): m["verdict"] == "OK" for m in _RESULT.finditer(text)}
    if not found:
        fail(TOOL, "no 'GPU N: OK|FAULTY' result line (the run was cut short?)")
    return GpuBurnResult(tuple(sorted(found.items())))
