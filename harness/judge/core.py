"""The verdict vocabulary shared by every tool's judgement.

A Judgement is what an operator reads: one verdict (healthy, warning, failing) and the
sentences that led to it, each naming the device. "Inconclusive" is not a fourth verdict on
the hardware: it marks a judgement made without readable evidence (smartctl could not open
the drive), so a stage or `vet judge` can treat it apart (exit status 3) instead of passing
or failing hardware nobody looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    HEALTHY = "healthy"
    WARNING = "warning"
    FAILING = "failing"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Verdict.HEALTHY: 0, Verdict.WARNING: 1, Verdict.FAILING: 2}


@dataclass(frozen=True)
class Finding:
    """One sentence and the verdict it alone would give (healthy = a note)."""

    verdict: Verdict
    reason: str


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    findings: tuple[Finding, ...]
    inconclusive: bool = False

    @property
    def reasons(self) -> tuple[str, ...]:
        """The sentences, worst first (failing, then warnings, then notes)."""
        return tuple(f.reason for f in self.findings)

    @classmethod
    def of(cls, findings: list[Finding] | tuple[Finding, ...],
           inconclusive: bool = False) -> Judgement:
        ordered = tuple(sorted(findings, key=lambda f: -f.verdict.rank))
        verdict = ordered[0].verdict if ordered else Verdict.HEALTHY
        if inconclusive and verdict is Verdict.HEALTHY:
            verdict = Verdict.WARNING
        return cls(verdict, ordered, inconclusive)

    @classmethod
    def merge(cls, judgements: list[Judgement] | tuple[Judgement, ...]) -> Judgement:
        """Several judgements (disks, GPUs, snapshots) as one; repeated sentences once."""
        seen: dict[str, Finding] = {}
        for judgement in judgements:
            for finding in judgement.findings:
                kept = seen.get(finding.reason)
                if kept is None or finding.verdict.rank > kept.verdict.rank:
                    seen[finding.reason] = finding
        return cls.of(list(seen.values()), any(j.inconclusive for j in judgements))


class Reasons:
    """Collects findings while a judge walks a record, then builds the Judgement."""

    def __init__(self) -> None:
        self._findings: list[Finding] = []
        self._inconclusive = False

    def fail(self, reason: str) -> None:
        self._findings.append(Finding(Verdict.FAILING, reason))

    def warn(self, reason: str) -> None:
        self._findings.append(Finding(Verdict.WARNING, reason))

    def note(self, reason: str) -> None:
        self._findings.append(Finding(Verdict.HEALTHY, reason))

    def add(self, verdict: Verdict, reason: str) -> None:
        self._findings.append(Finding(verdict, reason))

    def inconclusive(self, reason: str) -> None:
        """No verdict on the hardware is possible; the reason starts with 'inconclusive:'."""
        self._inconclusive = True
        self._findings.append(Finding(Verdict.WARNING, f"inconclusive: {reason}"))

    @property
    def problems(self) -> bool:
        return any(f.verdict is not Verdict.HEALTHY for f in self._findings)

    def judgement(self) -> Judgement:
        return Judgement.of(self._findings, self._inconclusive)
