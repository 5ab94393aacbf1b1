"""The message state machine: the table, forward jumps, absorbing finals, a stateful test."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from actors.messages import FINAL_STATES, State
from actors.states import TRANSITIONS, can_move, is_final, move

ORDER = [State.ACCEPTED, State.QUEUED, State.SUBMITTING, State.SENT]


def test_every_state_has_a_row_and_finals_have_no_exit() -> None:
    assert set(TRANSITIONS) == set(State)
    for s in FINAL_STATES:
        assert TRANSITIONS[s] == frozenset()
        assert is_final(s)


@pytest.mark.parametrize("final", sorted(FINAL_STATES))
@pytest.mark.parametrize("target", list(State))
def test_final_states_are_absorbing(final: State, target: State) -> None:
    new, refused = move(final, target)
    assert new == final
    assert refused == (target != final)


def test_late_sent_never_overwrites_delivered() -> None:
    assert move(State.DELIVERED, State.SENT) == (State.DELIVERED, True)


def test_forward_jump_implies_intermediate_states() -> None:
    assert move(State.ACCEPTED, State.SENT) == (State.SENT, False)
    assert move(State.ACCEPTED, State.DELIVERED) == (State.DELIVERED, False)


def test_not_sent_only_before_sent() -> None:
    for s in (State.ACCEPTED, State.QUEUED, State.SUBMITTING):
        assert can_move(s, State.NOT_SENT)
    assert move(State.SENT, State.NOT_SENT) == (State.SENT, True)


def test_requeue_is_only_from_submitting_and_never_implied() -> None:
    assert move(State.SUBMITTING, State.QUEUED) == (State.QUEUED, False)
    assert move(State.SENT, State.QUEUED) == (State.SENT, True)
    assert move(State.SENT, State.ACCEPTED) == (State.SENT, True)


def test_same_state_is_a_no_op() -> None:
    for s in State:
        assert move(s, s) == (s, False)


class StateMachineModel(RuleBasedStateMachine):
    """Random requests against one message; the kept history must always make sense."""

    def __init__(self) -> None:
        super().__init__()
        self.state = State.ACCEPTED
        self.history = [State.ACCEPTED]
        self.refused = 0

    @rule(wanted=st.sampled_from(list(State)))
    def request(self, wanted: State) -> None:
        target = wanted
        before = self.state
        new, refused = move(before, target)
        if refused:
            self.refused += 1
            assert new == before
        else:
            assert new == target
        if new != before:
            self.history.append(new)
        self.state = new

    @invariant()
    def finals_are_last(self) -> None:
        for s in self.history[:-1]:
            assert s not in FINAL_STATES

    @invariant()
    def delivered_and_not_delivered_follow_sent(self) -> None:
        if self.state in (State.DELIVERED, State.NOT_DELIVERED):
            # SENT was passed through, explicitly or as an implied forward step
            assert State.SENT in self.history or self.history[-2] in ORDER

    @invariant()
    def never_back_before_queued_after_sent(self) -> None:
        if State.SENT in self.history:
            after = self.history[self.history.index(State.SENT):]
            assert not {State.ACCEPTED, State.QUEUED, State.SUBMITTING, State.NOT_SENT} & set(after)


TestStateMachine = StateMachineModel.TestCase
TestStateMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
