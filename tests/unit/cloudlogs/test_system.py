"""The dashboard's system messages, from the agent's bus events: worded as the reference words
them (agent/cloudlogs/system.py). The expected lines are the ones the agent sent when they were
made from its log events — a user's dashboard reads the same text."""

from __future__ import annotations

import pytest

from agent.cloudlogs.system import KINDS, STEPS, system_message
from agent.events.kinds import (
    AppRejected,
    ContractServicesNotRun,
    DownloadProgress,
    ImageDownloaded,
    InsufficientDisk,
    Payload,
    PullFailed,
    PullStarted,
    ReleaseAborted,
    StepDone,
    StepFailed,
    StepStarted,
    TargetAccepted,
    UpdateLockHeld,
    UpdateLockOverridden,
    UpdateStatusChanged,
)
from agent.model.update_status import UpdateStatus as U
from agent.reconcile.steps import StepKind as K

IMG = "reg.test/app@sha256:1"
KILL = ("kill main_11_1_r1", "main_11_1_r1")
NAMED = ("main", "sha256:ab12")  # the service and image the executor names a container by
RM = ("remove image sha256:0123456789ab (reg/a:1, reg/b:2)", "reg/a:1, reg/b:2")

TABLE: list[tuple[Payload, tuple[str, bool] | None]] = [
    (PullStarted(IMG, ("main",)), (f"Downloading image '{IMG}'", False)),
    (ImageDownloaded(IMG, "sha256:" + "b" * 64), (f"Downloaded image '{IMG}'", False)),
    (
        PullFailed(IMG, "manifest unknown"),
        (f"Failed to download image '{IMG}' due to 'manifest unknown'", True),
    ),
    (
        InsufficientDisk(IMG, 300 * 2**20 + 5, 100 * 2**20, "/var/lib/docker"),
        (
            f"Not enough disk to download image '{IMG}': it needs about 300 MiB, 100 MiB are"
            " free; will retry",
            True,
        ),
    ),
    # a container without the service and image it runs: its name
    (StepStarted(K.KILL, *KILL, None, None), ("Killing service 'main_11_1_r1'", False)),
    # as the reference's objectNameForLogs: "<service name> <image>" (its Config.Image, the id)
    (StepStarted(K.KILL, *KILL, *NAMED), ("Killing service 'main sha256:ab12'", False)),
    (StepDone(K.KILL, *KILL, *NAMED), ("Killed service 'main sha256:ab12'", False)),
    (
        StepFailed(K.KILL, *KILL, *NAMED, error="boom"),
        ("Failed to kill service 'main sha256:ab12' due to 'boom'", True),
    ),
    # a new container: installed (created, then started), named by its service
    (
        StepStarted(K.START, "start demo/main", "main", None, None),
        ("Installing service 'main'", False),
    ),
    (StepDone(K.START, "start demo/main", "main", None, None), ("Installed service 'main'", False)),
    (
        StepFailed(K.START, "start demo/main", "main", None, None, error="boom"),
        ("Failed to install service 'main' due to 'boom'", True),
    ),
    (
        StepStarted(K.START_CONTAINER, "start main_1", "main_1", *NAMED),
        ("Starting service 'main sha256:ab12'", False),
    ),
    (
        StepDone(K.STOP_CONTAINER, "stop main_1", "main_1", *NAMED),
        ("Stopped service 'main sha256:ab12'", False),
    ),
    (
        StepStarted(K.CREATE_VOLUME, "create volume 1_data", "1_data", None, None),
        ("Creating volume '1_data'", False),
    ),
    (StepDone(K.CREATE_VOLUME, "create volume 1_data", "1_data", None, None), None),
    (
        StepFailed(
            K.CREATE_NETWORK, "create network 1_default", "1_default", None, None, error="boom"
        ),
        ("Error creating network '1_default' due to 'boom'", True),
    ),
    (
        StepStarted(K.REMOVE_NETWORK, "remove network 1_default", "1_default", None, None),
        ("Removing network '1_default'", False),
    ),
    (StepStarted(K.REMOVE_IMAGE, *RM, None, None), ("Deleting image 'reg/a:1, reg/b:2'", False)),
    (StepDone(K.REMOVE_IMAGE, *RM, None, None), ("Deleted image 'reg/a:1, reg/b:2'", False)),
    (StepStarted(K.UPDATE_METADATA, "carry main_1 into release r2", "main_1", None, None), None),
    (
        UpdateLockHeld(1, "aux", "/tmp/x/updates.lock"),
        (
            "Updates are locked, retrying when the lock is released. Reason: service 'aux'"
            " holds the update lock (/tmp/x/updates.lock)",
            False,
        ),
    ),
    (
        UpdateLockOverridden(1, "aux", "/tmp/x/updates.lock"),
        ("Update lock overridden (BALENA_SUPERVISOR_OVERRIDE_LOCK or a forced update)", False),
    ),
    (AppRejected("demo", "u1", "r2", "bad"), ("Could not move to new release: demo: bad", True)),
    (
        ReleaseAborted("demo", "r2", "rolled back: exits", "r1"),
        ("Update of 'demo' to release r2 aborted: rolled back: exits", True),
    ),
    (
        UpdateStatusChanged("u1", "r2", U.DONE, U.APPLYING_CHANGES, 5.0, "demo"),
        ("Update of 'demo' to release r2 done", False),
    ),
    (UpdateStatusChanged("u1", "r2", U.DOWNLOADING, None, 5.0, "demo"), None),
    (
        ContractServicesNotRun("demo", ("a", "b")),
        ("Not running containers because of contract violations: a. b", False),
    ),
    (DownloadProgress("u1", IMG, 40, 1000), None),
    (TargetAccepted("cloud", ("demo",)), None),
]


@pytest.mark.parametrize(("event", "line"), TABLE, ids=lambda v: type(v).__name__)
def test_agent_events_are_worded_as_the_reference_words_them(
    event: Payload, line: tuple[str, bool] | None
) -> None:
    assert system_message(event) == line


def test_the_channel_hears_every_event_that_makes_a_line_and_only_those() -> None:
    worded = {type(event) for event, line in TABLE if line is not None}
    assert worded == set(KINDS)


def test_the_worded_step_kinds_are_the_planners() -> None:
    # the step events carry the kind as a string (the events sit below the planner's layer)
    assert set(STEPS) <= {k.value for k in K}
    assert set(K) - set(STEPS) == {K.PULL, K.UPDATE_METADATA}  # a pull: PullStarted; a rename
