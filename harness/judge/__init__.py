"""Verdicts on parsed tool output: the one place where vetting thresholds live.

One function per tool takes a record from harness.probes (and optional thresholds, each a
frozen dataclass whose defaults are the project's policy) and returns a Judgement: healthy,
warning or failing, with one sentence per reason naming the device. The stages and
`vet judge` call the same functions. It is a package beside harness.probes, not inside it,
because probes are pure parsers (no policy) and a judgement may combine several records
(before/after snapshots).
"""

from harness.judge.core import Finding, Judgement, Reasons, Verdict
from harness.judge.cpu import judge_stress_ng
from harness.judge.gpu import GpuThresholds, judge_gpu, judge_nvidia_smi
from harness.judge.kernel import (
    EdacThresholds,
    KernelLogThresholds,
    compare_edac,
    judge_edac,
    judge_kernel_log,
)
from harness.judge.network import (
    EthtoolThresholds,
    Iperf3Thresholds,
    judge_ethtool,
    judge_ethtool_stats,
    judge_iperf3,
)
from harness.judge.platform import (
    PsuThresholds,
    judge_dmidecode,
    judge_ipmitool,
    judge_lshw,
    judge_lspci,
)
from harness.judge.storage import (
    FioThresholds,
    SmartThresholds,
    compare_smart,
    judge_fio,
    judge_lsblk,
    judge_smartctl,
)

__all__ = [
    "EdacThresholds",
    "EthtoolThresholds",
    "Finding",
    "FioThresholds",
    "GpuThresholds",
    "Iperf3Thresholds",
    "Judgement",
    "KernelLogThresholds",
    "PsuThresholds",
    "Reasons",
    "SmartThresholds",
    "Verdict",
    "compare_edac",
    "compare_smart",
    "judge_dmidecode",
    "judge_edac",
    "judge_ethtool",
    "judge_ethtool_stats",
    "judge_fio",
    "judge_gpu",
    "judge_iperf3",
    "judge_ipmitool",
    "judge_kernel_log",
    "judge_lsblk",
    "judge_lshw",
    "judge_lspci",
    "judge_nvidia_smi",
    "judge_smartctl",
    "judge_stress_ng",
]
