"""Step kinds are exhaustive by construction (issue 15 point 4): every step type has its own
kind, and a dispatch over steps refuses a type it doesn't know instead of skipping it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import pytest

from agent.reconcile.steps import Step, StepKind, describe, step_app_id, step_service, subject


def test_every_step_type_has_its_own_kind():
    kinds = [cls.kind for cls in get_args(Step)]
    assert sorted(kinds) == sorted(StepKind)  # one type per kind, one kind per type
    assert all(isinstance(k, StepKind) for k in kinds)


@dataclass(frozen=True)
class Reboot:  # a step type added to the planner but not to its dispatches
    kind = "reboot"


@pytest.mark.parametrize("dispatch", [describe, subject, step_app_id, step_service])
def test_an_unknown_step_is_refused_not_skipped(dispatch):
    with pytest.raises(AssertionError):
        dispatch(Reboot())
