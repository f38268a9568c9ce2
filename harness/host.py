"""HostUnderTest: what a stage test gets from the `host` fixture.

It runs commands through whatever Channel reaches the host, and turns each one into
events, evidence and an Allure step, so stage code stays an operator's checklist.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import allure

from harness.console.channel import Channel, OutputLine
from harness.errors import ToolMissing
from harness.events import EventLog
from harness.evidence import Evidence
from harness.models import CommandResult, ExpectedSpec, Host, Measurement, SpecDifference
from harness.profiles import Params
from harness.store import Store


@dataclass(frozen=True)
class RunContext:
    """What every host of one run shares."""

    run_id: str
    profile: str
    store: Store
    run_dir: Path  # reports/runs/<run_id>


class HostUnderTest:
    """A host being vetted: run commands, keep evidence, record measurements."""

    def __init__(
        self, entry: Host, channel: Channel, ctx: RunContext, params: dict[str, Params]
    ) -> None:
        self.entry = entry
        self.channel = channel
        self.ctx = ctx
        self.all_params = params
        self.host_dir = ctx.run_dir / entry.name
        self.events = EventLog(self.host_dir / "events.jsonl", ctx.run_id, entry.name)
        #: What earlier stages learnt about this host (e.g. its hardware inventory).
        self.facts: dict[str, Any] = {}
        self.stage = "setup"
        self.evidence = Evidence(self.host_dir / self.stage)

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def expected(self) -> ExpectedSpec:
        """The spec the operator wrote for this host in the inventory."""
        return self.entry.spec

    @property
    def params(self) -> Params:
        """Effective parameters of the stage now running (profile + inventory)."""
        return self.all_params.get(self.stage, {})

    def enter_stage(self, stage: str) -> None:
        self.stage = stage
        self.evidence = Evidence(self.host_dir / stage)
        self.events.emit("harness", "stage-start", stage=stage)

    def run(
        self, command: str, timeout: float = 60.0, check: bool = False, attach: bool = True
    ) -> CommandResult:
        """Run a command on the host; its output becomes events and evidence.

        With check=True a non-zero exit fails the test with the command's output.
        """
        command_id = uuid.uuid4().hex[:12]
        source = self.channel.transport
        self.events.emit(source, "command-start", command_id, command=command, stage=self.stage)

        def on_line(line: OutputLine) -> None:
            self.events.emit(source, "line", line.command_id, stream=line.stream, text=line.text)

        with allure.step(f"{self.name}$ {command}"):
            try:
                result = self.channel.run(command, timeout, on_line, command_id)
            except Exception as exc:
                self.events.emit(source, "command-error", command_id, error=str(exc))
                raise
            self.events.emit(
                source, "command-end", command_id,
                exit_status=result.exit_status, duration_s=round(result.duration_s, 3),
            )
            if attach:
                self.evidence.attach(
                    f"$ {command}",
                    f"$ {command}\n# exit status {result.exit_status}, "
                    f"{result.duration_s:.2f} s\n--- stdout ---\n{result.stdout}"
                    f"--- stderr ---\n{result.stderr}",
                )
        if check and not result.ok:
            raise AssertionError(
                f"host {self.name}: `{command}` exited {result.exit_status}: "
                f"{(result.stderr or result.stdout).strip()[-500:]}"
            )
        return result

    def require(self, tool: str, package: str | None = None) -> None:
        """Fail clearly, naming the package to install, when a tool is missing."""
        found = self.channel.run(f"command -v {shlex.quote(tool)}", timeout=15)
        if not found.ok:
            raise ToolMissing.for_tool(self.name, tool, package)

    def measure(self, name: str, value: float, unit: str) -> None:
        self.ctx.store.add_measurements(
            self.ctx.run_id, self.name, self.stage, [Measurement(name, float(value), unit)]
        )
        self.events.emit("harness", "measurement", name=name, value=value, unit=unit)

    def record(self, name: str, record: Any) -> None:
        """Keep a parsed record: in the store, and attached as JSON."""
        self.ctx.store.add_record(self.ctx.run_id, self.name, self.stage, name, record)
        self.evidence.attach_json(name, record)

    def record_spec_diff(self, rows: list[SpecDifference]) -> None:
        self.ctx.store.add_spec_diffs(self.ctx.run_id, self.name, rows)

    @contextmanager
    def scratch_path(self, directory: str, name: str) -> Iterator[str]:
        """A path for a scratch file on the host, removed afterwards whatever happens."""
        path = f"{directory.rstrip('/')}/vet-{self.ctx.run_id}-{name}"
        try:
            yield path
        finally:
            self.channel.run(f"rm -f {shlex.quote(path)}", timeout=60)

    def close(self) -> None:
        self.events.emit("harness", "host-closed")
        self.events.close()
        self.channel.close()
