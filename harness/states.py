"""The host state machine: one transition table, the single source of truth.

A host moves forward through the pipeline. Stages that a run does not select are
jumped over, so every stage state may go to any later one. Any working state may
fail; a failed host is held for a human or released.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from harness.errors import IllegalTransition


class State(enum.StrEnum):
    REGISTERED = "Registered"
    QUEUED = "Queued"
    POWER_ON = "PowerOn"
    BOOTING = "Booting"
    INVENTORY_CHECK = "InventoryCheck"
    SPEC_VALIDATE = "SpecValidate"
    SMART = "SMART"
    CPU_STRESS = "CPUStress"
    MEMORY = "Memory"
    STORAGE = "Storage"
    NETWORK = "Network"
    GPU = "GPU"
    PSU = "PSU"
    REPORTING = "Reporting"
    COMPLETED = "Completed"
    FAILED = "Failed"
    HOLDING = "Holding"
    RELEASED = "Released"


#: Stage name (the pytest marker) -> the state a host is in while it runs.
STAGE_STATES: Mapping[str, State] = {
    "inventory": State.INVENTORY_CHECK,
    "spec": State.SPEC_VALIDATE,
    "smart": State.SMART,
    "cpu": State.CPU_STRESS,
    "memory": State.MEMORY,
    "storage": State.STORAGE,
    "network": State.NETWORK,
    "gpu": State.GPU,
    "psu": State.PSU,
}

#: The state a host is in while a stage runs -> that stage.
STATE_STAGES: Mapping[State, str] = {state: stage for stage, state in STAGE_STATES.items()}

#: The pipeline order of stages; test order follows this, never file names.
STAGES: tuple[str, ...] = tuple(STAGE_STATES)

_STAGE_STATE_ORDER: tuple[State, ...] = tuple(STAGE_STATES.values())
_WORKING: frozenset[State] = frozenset(
    {State.QUEUED, State.POWER_ON, State.BOOTING, *_STAGE_STATE_ORDER, State.REPORTING}
)


def _build_table() -> dict[State, frozenset[State]]:
    table: dict[State, set[State]] = {
        State.REGISTERED: {State.QUEUED},
        State.QUEUED: {State.POWER_ON, State.BOOTING, *_STAGE_STATE_ORDER, State.REPORTING},
        State.POWER_ON: {State.BOOTING},
        State.BOOTING: {*_STAGE_STATE_ORDER, State.REPORTING},
        State.REPORTING: {State.COMPLETED},
        State.COMPLETED: set(),
        State.FAILED: {State.HOLDING, State.RELEASED},
        State.HOLDING: {State.RELEASED},
        State.RELEASED: set(),
    }
    for index, state in enumerate(_STAGE_STATE_ORDER):
        table[state] = {*_STAGE_STATE_ORDER[index + 1 :], State.REPORTING}
    for state in _WORKING:
        table[state].add(State.FAILED)
    return {state: frozenset(targets) for state, targets in table.items()}


TRANSITIONS: Mapping[State, frozenset[State]] = _build_table()


def check_transition(current: State, target: State, host: str = "?") -> None:
    """Raise IllegalTransition unless the table allows current -> target."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (final state)"
        raise IllegalTransition(
            f"host {host}: cannot go from {current} to {target}; from {current} it may go to "
            f"{allowed}"
        )


def stage_index(stage: str) -> int:
    """Position of a stage in the pipeline; unknown stages sort last."""
    try:
        return STAGES.index(stage)
    except ValueError:
        return len(STAGES)
