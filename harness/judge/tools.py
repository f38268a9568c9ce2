"""`vet judge TOOL FILE`: the table of tools, and the command that parses, judges and prints.

Exit statuses: 0 healthy, 1 warning, 2 failing, 3 cannot judge (the input is not that tool's
output, the file cannot be read, the tool name is unknown, or the judgement is inconclusive,
e.g. smartctl could not open the drive). 3 and not argparse's usual 2 for a wrong tool name,
because 2 already means "failing".
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from harness.judge.core import Judgement, Verdict
from harness.judge.cpu import judge_stress_ng
from harness.judge.gpu import judge_nvidia_smi
from harness.judge.kernel import judge_edac, judge_kernel_log
from harness.judge.network import judge_ethtool, judge_ethtool_stats, judge_iperf3
from harness.judge.platform import judge_dmidecode, judge_ipmitool, judge_lshw, judge_lspci
from harness.judge.storage import judge_fio, judge_lsblk, judge_smartctl
from harness.models import to_jsonable
from harness.probes._common import ParseError
from harness.probes.dmidecode import parse_dmidecode
from harness.probes.edac import parse_edac
from harness.probes.ethtool import EthtoolStats, parse_ethtool, parse_ethtool_stats
from harness.probes.fio import parse_fio
from harness.probes.iperf3 import parse_iperf3
from harness.probes.ipmitool import parse_ipmitool
from harness.probes.kernel_log import parse_kernel_log
from harness.probes.lsblk import parse_lsblk
from harness.probes.lshw import parse_lshw
from harness.probes.lspci import parse_lspci_nn, parse_lspci_vmm
from harness.probes.nvidia_smi import parse_nvidia_smi
from harness.probes.smartctl import parse_smartctl
from harness.probes.stress_ng import parse_stress_ng, parse_stress_ng_yaml

EXIT_STATUS = {Verdict.HEALTHY: 0, Verdict.WARNING: 1, Verdict.FAILING: 2}
CANNOT_JUDGE = 3


@dataclass(frozen=True)
class Tool:
    """How `vet judge` reads one tool: the command it expects, its parser and its judge."""

    name: str
    reads: str
    parse: Callable[[str], Any]
    judge: Callable[[Any], Judgement]


def _parse_ethtool(text: str) -> Any:
    if text.lstrip().startswith("NIC statistics:"):
        return parse_ethtool_stats(text)
    return parse_ethtool(text)


def _judge_ethtool(record: Any) -> Judgement:
    if isinstance(record, EthtoolStats):
        return judge_ethtool_stats(record)
    return judge_ethtool(record)


def _parse_stress_ng(text: str) -> Any:
    if "stress-ng: " not in text and ("metrics:" in text or "system-info:" in text):
        return parse_stress_ng_yaml(text)
    return parse_stress_ng(text)


def _parse_lspci(text: str) -> Any:
    first = next((line for line in text.splitlines() if line.strip()), "")
    return parse_lspci_vmm(text) if first.startswith("Slot:") else parse_lspci_nn(text)


TOOLS: dict[str, Tool] = {tool.name: tool for tool in (
    Tool("smartctl", "smartctl -x -j DEVICE (or -a -j)", parse_smartctl, judge_smartctl),
    Tool("nvidia-smi", "nvidia-smi -q -x, nvidia-smi -q, or plain nvidia-smi",
         parse_nvidia_smi, judge_nvidia_smi),
    Tool("ipmitool", "ipmitool sdr elist, or ipmitool sensor", parse_ipmitool, judge_ipmitool),
    Tool("dmidecode", "dmidecode", parse_dmidecode, judge_dmidecode),
    Tool("lshw", "lshw -json", parse_lshw, judge_lshw),
    Tool("fio", "fio --output-format=json", parse_fio, judge_fio),
    Tool("iperf3", "iperf3 -J", parse_iperf3, judge_iperf3),
    Tool("dmesg", "dmesg, or journalctl -k [-o short-monotonic]", parse_kernel_log,
         judge_kernel_log),
    Tool("ethtool", "ethtool IFACE, or ethtool -S IFACE", _parse_ethtool, _judge_ethtool),
    Tool("edac", "the EDAC sysfs counters (harness.probes.edac.EDAC_COMMAND)", parse_edac,
         judge_edac),
    Tool("stress-ng", "stress-ng --metrics stderr, or its --yaml file", _parse_stress_ng,
         judge_stress_ng),
    Tool("lspci", "lspci -nn / -vvnn, or lspci -vmm", _parse_lspci, judge_lspci),
    Tool("lsblk", "lsblk -J -O -b", parse_lsblk, judge_lsblk),
)}


def tool_list() -> str:
    return "\n".join(f"  {tool.name:<11} {tool.reads}" for tool in TOOLS.values())


def judge_command(tool_name: str, file: str, stdin: TextIO, stdout: TextIO,
                  stderr: TextIO) -> int:
    """Run `vet judge`: print the JSON result on stdout, problems on stderr; the exit status."""
    tool = TOOLS.get(tool_name)
    if tool is None:
        print(f"vet judge: unknown tool {tool_name!r}; the tools are:\n{tool_list()}",
              file=stderr)
        return CANNOT_JUDGE
    try:
        text = stdin.read() if file == "-" else Path(file).read_bytes().decode(
            "utf-8", errors="replace")
    except OSError as exc:
        print(f"vet judge: cannot read {file}: {exc.strerror or exc}", file=stderr)
        return CANNOT_JUDGE
    try:
        record = tool.parse(text)
    except ParseError as exc:
        print(f"vet judge: {file} is not readable as {tool.name} output ({tool.reads}): "
              f"{exc}", file=stderr)
        return CANNOT_JUDGE
    judgement = tool.judge(record)
    json.dump({
        "tool": tool.name,
        "file": file,
        "record": to_jsonable(record),
        "verdict": judgement.verdict.value,
        "inconclusive": judgement.inconclusive,
        "reasons": list(judgement.reasons),
        "findings": [{"verdict": f.verdict.value, "reason": f.reason}
                     for f in judgement.findings],
    }, stdout, indent=2)
    stdout.write("\n")
    if judgement.inconclusive:
        print(f"vet judge: {judgement.reasons[0]}", file=stderr)
        return CANNOT_JUDGE
    return EXIT_STATUS[judgement.verdict]


def main_judge(tool_name: str | None, file: str | None) -> int:
    """`vet judge` on the process's streams; a missing TOOL or FILE is exit 3, not 2."""
    if tool_name is None or file is None:
        print(f"usage: vet judge TOOL FILE (FILE may be - for stdin); the tools are:\n"
              f"{tool_list()}", file=sys.stderr)
        return CANNOT_JUDGE
    return judge_command(tool_name, file, sys.stdin, sys.stdout, sys.stderr)
