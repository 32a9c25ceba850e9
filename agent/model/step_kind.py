"""What a planned step does (agent/reconcile/steps.py): its log events' `kind`, and the step
events' (agent/events/kinds.py) — a model type, so the events need not import the planner."""

from __future__ import annotations

from enum import StrEnum


class StepKind(StrEnum):
    """What a step does, as its log events name it (`kind`)."""

    PULL = "pull"
    REMOVE_IMAGE = "remove-image"
    CREATE_VOLUME = "create-volume"
    CREATE_NETWORK = "create-network"
    REMOVE_NETWORK = "remove-network"
    KILL = "kill"
    START = "start"
    START_CONTAINER = "start-container"
    STOP_CONTAINER = "stop-container"
    UPDATE_METADATA = "update-metadata"
