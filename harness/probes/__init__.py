"""Pure parsers: a tool's output text in, typed frozen records out. No I/O here.

Every parser raises ParseError (and nothing else) on malformed, truncated or foreign input,
so a stage can tell "the hardware is bad" from "we could not read the tool".
"""

from harness.probes._common import ParseError
from harness.probes.dmidecode import (
    DmiBaseboard,
    DmiBios,
    DmiChassis,
    DmiDecode,
    DmiMemoryDevice,
    DmiMemoryError,
    DmiPowerSupply,
    DmiProcessor,
    DmiRecord,
    DmiSystem,
    parse_dmidecode,
)
from harness.probes.fio import FioDiskUtil, FioIo, FioJob, FioResult, parse_fio
from harness.probes.iperf3 import Iperf3Result, parse_iperf3
from harness.probes.lsblk import BlockDevice, parse_lsblk
from harness.probes.lshw import (
    LshwCpu,
    LshwDisk,
    LshwDisplay,
    LshwMemoryBank,
    LshwNic,
    LshwPower,
    LshwReport,
    LshwSystem,
    parse_lshw,
)
from harness.probes.lspci import PciDevice, parse_lspci_nn, parse_lspci_vmm
from harness.probes.stress_ng import (
    StressNgResult,
    StressorMetrics,
    parse_stress_ng,
    parse_stress_ng_yaml,
)

__all__ = [
    "BlockDevice",
    "DmiBaseboard",
    "DmiBios",
    "DmiChassis",
    "DmiDecode",
    "DmiMemoryDevice",
    "DmiMemoryError",
    "DmiPowerSupply",
    "DmiProcessor",
    "DmiRecord",
    "DmiSystem",
    "FioDiskUtil",
    "FioIo",
    "FioJob",
    "FioResult",
    "Iperf3Result",
    "LshwCpu",
    "LshwDisk",
    "LshwDisplay",
    "LshwMemoryBank",
    "LshwNic",
    "LshwPower",
    "LshwReport",
    "LshwSystem",
    "ParseError",
    "PciDevice",
    "StressNgResult",
    "StressorMetrics",
    "parse_dmidecode",
    "parse_fio",
    "parse_iperf3",
    "parse_lsblk",
    "parse_lshw",
    "parse_lspci_nn",
    "parse_lspci_vmm",
    "parse_stress_ng",
    "parse_stress_ng_yaml",
]
