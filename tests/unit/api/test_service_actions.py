"""Service and host actions are closed sets (issue 15 point 4): each known action does its one
thing; anything else is refused with a clear 400 and never starts a container."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agent.api.actions import AppRef, ServiceAction, service_action
from agent.api.common import ApiError
from agent.events.bus import Bus
from agent.events.kinds import ServiceActionTaken
from agent.host import HostAction, logind_method
from agent.model import ContainerStatus
from tests.unit.reconcile.factories import container


class Engine:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def restart(self, cid: str) -> None:
        self.calls.append(("restart", cid))

    async def stop(self, cid: str) -> None:
        self.calls.append(("stop", cid))

    async def start(self, cid: str) -> None:
        self.calls.append(("start", cid))


CONTAINER = container(
    "c1", "app", "web", release_uuid="r", release_id=1, status=ContainerStatus.EXITED
)
APP = AppRef(1, "app", "app", None)


async def act(
    action: object, told: list[ServiceActionTaken] | None = None
) -> list[tuple[str, str]]:
    engine = Engine()
    bus = Bus()
    bus.subscribe(ServiceActionTaken, (told if told is not None else []).append)
    agent = SimpleNamespace(engine=engine, bus=bus)
    # forced: no update lock is looked at, only the action itself decides
    await service_action(agent, APP, CONTAINER, action, force=True)  # type: ignore[arg-type]
    return engine.calls


@pytest.mark.parametrize("action", list(ServiceAction))
async def test_each_service_action_does_its_own_engine_call(action):
    told: list[ServiceActionTaken] = []
    assert (await act(action, told)) == [(action.value, "c1")]
    assert (await act(action.value)) == [(action.value, "c1")]  # the wire string is the same action
    # and says so on the bus (a line in /v2/local/logs)
    assert told == [ServiceActionTaken(action.value, 1, "web")]


@pytest.mark.parametrize("action", ["destroy", "", "Start", "kill"])
async def test_an_unknown_service_action_is_refused_and_starts_nothing(action):
    engine = Engine()
    agent = SimpleNamespace(engine=engine, bus=Bus())
    with pytest.raises(ApiError) as caught:
        await service_action(agent, APP, CONTAINER, action, force=True)  # type: ignore[arg-type]
    assert caught.value.status == 400 and "unknown service action" in str(caught.value.message)
    assert engine.calls == []


def test_service_actions_keep_their_route_names():
    assert [a.value for a in ServiceAction] == ["restart", "stop", "start"]


def test_host_actions_map_to_logind_methods():
    assert {a.value: logind_method(a) for a in HostAction} == {
        "reboot": "Reboot",
        "shutdown": "PowerOff",
    }


def test_a_service_the_target_release_no_longer_has_is_404_as_the_reference():
    from agent.api.actions import TARGET_SERVICE_NOT_FOUND, require_in_target
    from tests.unit.reconcile.factories import app, release, svc, target

    spec = target({"app": app(1, release("r", {"web": svc("web:1")}))}).apps["app"]
    require_in_target(AppRef(1, "app", "app", spec), CONTAINER)  # in the target: acted on
    gone = target({"app": app(1, release("r2", {"db": svc("db:1", image_id=2)}))}).apps["app"]
    for ref in (AppRef(1, "app", "app", gone), APP):  # dropped by r2; app not in the target
        with pytest.raises(ApiError) as caught:
            require_in_target(ref, CONTAINER)
        assert caught.value.status == 404 and caught.value.message == TARGET_SERVICE_NOT_FOUND
