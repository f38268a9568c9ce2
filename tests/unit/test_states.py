from __future__ import annotations

import itertools

import pytest

from harness.errors import IllegalTransition
from harness.states import STAGES, TRANSITIONS, State, check_transition, stage_index


def test_pipeline_happy_path_is_allowed() -> None:
    path = [State.REGISTERED, State.QUEUED, State.POWER_ON, State.BOOTING,
            State.INVENTORY_CHECK, State.SPEC_VALIDATE, State.SMART, State.CPU_STRESS,
            State.MEMORY, State.STORAGE, State.NETWORK, State.GPU, State.PSU,
            State.REPORTING, State.COMPLETED]
    for current, target in itertools.pairwise(path):
        check_transition(current, target)


def test_unselected_stages_can_be_jumped_over() -> None:
    check_transition(State.INVENTORY_CHECK, State.STORAGE)
    check_transition(State.QUEUED, State.CPU_STRESS)


def test_going_backwards_raises_with_the_allowed_targets() -> None:
    with pytest.raises(IllegalTransition) as err:
        check_transition(State.STORAGE, State.CPU_STRESS, "node07")
    message = str(err.value)
    assert "node07" in message and "Storage" in message and "CPUStress" in message
    assert "Network" in message  # names where it could go


@pytest.mark.parametrize("state", [s for s in State if s not in
                                   (State.REGISTERED, State.COMPLETED, State.FAILED,
                                    State.HOLDING, State.RELEASED)])
def test_every_working_state_may_fail(state: State) -> None:
    check_transition(state, State.FAILED)


def test_failed_goes_only_to_holding_or_released() -> None:
    assert TRANSITIONS[State.FAILED] == {State.HOLDING, State.RELEASED}
    assert TRANSITIONS[State.HOLDING] == {State.RELEASED}
    with pytest.raises(IllegalTransition):
        check_transition(State.FAILED, State.COMPLETED)


def test_final_states_go_nowhere() -> None:
    for state in (State.COMPLETED, State.RELEASED):
        with pytest.raises(IllegalTransition, match="final state"):
            check_transition(state, State.QUEUED)


def test_stage_order_follows_the_pipeline() -> None:
    assert STAGES[:3] == ("inventory", "spec", "smart")
    assert stage_index("cpu") < stage_index("storage") < stage_index("network")
    assert stage_index("unknown") == len(STAGES)


def test_each_stage_state_names_its_stage_back() -> None:
    """An interrupted host's reason names its stage from the state alone (the controller's
    view), the same as the worker that ran it."""
    from harness.states import STAGE_STATES, STATE_STAGES
    assert all(STATE_STAGES[state] == stage for stage, state in STAGE_STATES.items())
    assert State.QUEUED not in STATE_STAGES
