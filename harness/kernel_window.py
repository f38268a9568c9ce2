"""The kernel log lines a stage produced: mark the log at the stage's start, read what came
after, judge it with harness.judge.judge_kernel_log.

The mark is the log's last line, found again in the later `dmesg`: no clock to compare
(printk's clock and the wall clock differ), and a ring buffer that wrapped in between is
noticed (the mark is gone) and then the whole log is judged, with a note saying so.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.host import HostUnderTest
from harness.judge import Judgement, KernelLogThresholds, Reasons, judge_kernel_log
from harness.probes import ParseError
from harness.probes.kernel_log import parse_kernel_log

DMESG_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class KernelWindow:
    host: HostUnderTest
    last_line: str | None  # the log's last line at the mark (None: the log was empty)
    readable: bool
    detail: str

    @classmethod
    def open(cls, host: HostUnderTest) -> KernelWindow:
        """Mark the kernel log now (read with `dmesg`, as root on the host)."""
        result = host.run("dmesg | tail -n 1", timeout=DMESG_TIMEOUT_S, attach=False)
        if not result.ok:
            return cls(host, None, False, (result.stderr or result.stdout).strip()[-200:])
        line = result.stdout.rstrip("\n")
        return cls(host, line or None, True, "")

    def text(self) -> tuple[str, str]:
        """The lines logged since the mark, and a note on how they were found."""
        result = self.host.run("dmesg", timeout=DMESG_TIMEOUT_S, attach=False)
        if not result.ok:
            raise OSError((result.stderr or result.stdout).strip()[-200:] or
                          f"dmesg exited {result.exit_status}")
        log = result.stdout
        if self.last_line is None:
            return log, "the whole log (it was empty at the stage's start)"
        at = log.rfind(self.last_line + "\n")
        if at < 0:
            return log, ("the whole log: the line marked at the stage's start is gone (the "
                         "ring buffer wrapped), so older lines are judged too")
        return log[at + len(self.last_line) + 1:], "the lines logged since the stage started"

    def judge(self, limits: KernelLogThresholds | None = None) -> Judgement:
        """Judge what the kernel logged since the mark; unreadable logs are inconclusive."""
        reasons = Reasons()
        if not self.readable:
            reasons.inconclusive(f"the kernel log could not be read (dmesg: {self.detail}); "
                                 "hardware errors during the stage are unknown")
            return reasons.judgement()
        try:
            text, note = self.text()
        except OSError as exc:
            reasons.inconclusive(f"the kernel log could not be read again (dmesg: {exc})")
            return reasons.judgement()
        self.host.evidence.attach("kernel log during the stage", f"# {note}\n{text}")
        if not text.strip():
            reasons.note("kernel log: nothing logged during the stage")
            return reasons.judgement()
        try:
            log = parse_kernel_log(text)
        except ParseError as exc:
            reasons.inconclusive(f"the kernel log could not be parsed: {exc}")
            return reasons.judgement()
        judgement = judge_kernel_log(log, limits)
        self.host.record("kernel log findings", {"note": note, "findings": log.findings,
                                                 "judgement": judgement})
        return judgement
