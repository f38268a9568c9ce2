"""The stage helpers with real processes on this machine: the sampler beside a load (samples
during and at the end, the load's exit status kept, nothing left running) and the kernel
log window (only what was logged after the mark is judged)."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.console.local import LocalChannel
from harness.errors import ToolMissing
from harness.host import HostUnderTest, RunContext
from harness.judge import Verdict
from harness.kernel_window import KernelWindow
from harness.models import CommandResult, Connection, Host
from harness.sampling import sampled
from harness.store import Store
from tests.fixtures.recorded_tools import DATA, RecordedTools, Rule, recorded

__all__ = ["recorded"]


@pytest.fixture
def vetted(tmp_path: Path) -> Iterator[HostUnderTest]:
    store = Store(tmp_path / "vet.sqlite")
    host = HostUnderTest(Host("localhost", Connection("local")), LocalChannel("localhost"),
                         RunContext("helpers", "quick", store, tmp_path / "run"), {})
    host.enter_stage("cpu")
    yield host
    host.close()
    store.close()


def test_sampler_runs_beside_the_load_and_is_gone_after(vetted: HostUnderTest,
                                                        tmp_path: Path) -> None:
    token = f"vet-sampler-{secrets.token_hex(4)}"
    samples = tmp_path / "samples.txt"
    result = vetted.run(sampled("stress-ng --cpu 1 --timeout 3s -q; exit 3",
                                f"echo {token} $(date +%s%N)", 1, str(samples)), timeout=60)
    assert result.exit_status == 3  # the load's own status
    lines = samples.read_text().splitlines()
    assert len(lines) >= 3 and all(line.startswith(token) for line in lines), lines
    # during the load (a sample a second) and once at its end
    left = subprocess.run(["pgrep", "-f", token], capture_output=True, text=True, timeout=10)
    assert left.stdout == "", f"the sampler outlived the load: {left.stdout}"


def test_kernel_window_judges_only_what_came_after_the_mark(
        vetted: HostUnderTest, recorded: RecordedTools, tmp_path: Path) -> None:
    lines = (DATA / "probes" / "kernel-errors-dmesg.txt").read_text().splitlines(keepends=True)
    before, after = tmp_path / "before.txt", tmp_path / "after.txt"
    before.write_text("".join(lines[:12]))  # up to the corrected PCIe error at 480 s
    after.write_text("".join(lines[:12] + [line for line in lines[12:] if "Xid" in line]))
    recorded.add("dmesg", Rule("", (before, after, after)))
    window = KernelWindow.open(vetted)
    judgement = window.judge()
    assert judgement.verdict is Verdict.FAILING
    assert all("machine check" not in r and "memory error" not in r for r in judgement.reasons)
    assert any("XID 79" in r for r in judgement.reasons)

    wrapped = tmp_path / "wrapped.txt"  # the marked line is gone: the ring buffer wrapped
    wrapped.write_text("".join(lines[13:15]))
    recorded.add("dmesg", Rule("", (before, wrapped)))
    late = KernelWindow.open(vetted).judge()
    notes = [p.read_text() for p in vetted.evidence.directory.iterdir()
             if "kernel_log" in p.name]
    assert any("the ring buffer wrapped" in n for n in notes)
    assert late.verdict is Verdict.FAILING  # the ATA error lines are judged too


def test_require_asks_for_every_stage_tool_once_and_names_a_missing_one(
        vetted: HostUnderTest, recorded: RecordedTools, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    run = vetted.channel.run

    def counting(command: str, *args: Any, **kwargs: Any) -> CommandResult:
        asked.append(command)
        return run(command, *args, **kwargs)

    monkeypatch.setattr(vetted.channel, "run", counting)
    recorded.add("fio", Rule("", ()))  # a stand-in: present whatever this machine has
    recorded.add("wipefs", Rule("", ()))
    vetted.require("fio")
    assert len(asked) == 1 and "wipefs" in asked[0]  # the stage tools, in the same command
    vetted.require("wipefs", "util-linux")
    vetted.require("fio")
    assert len(asked) == 1, "a tool found once was asked for again"
    with pytest.raises(ToolMissing, match=r"vet-no-such-tool.*vet-tool-pkg"):
        vetted.require("vet-no-such-tool", "vet-tool-pkg")
    with pytest.raises(ToolMissing):  # still missing: asked again, alone
        vetted.require("vet-no-such-tool")
    assert len(asked) == 3 and "wipefs" not in asked[2]
