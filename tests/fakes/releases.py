"""Releases the fake-engine tests deploy, and what they look for in the engine's calls."""

from __future__ import annotations

import asyncio
from typing import Any

from agent.model import TargetState, normalize_image_ref
from tests.fakes.rig import Rig
from tests.unit.reconcile.factories import app, release, svc, target


def db(tag: str) -> dict[str, Any]:
    """db at reg.test/db:`tag`, with the named volume `data`."""
    return svc(f"reg.test/db:{tag}", composition={"volumes": ["data:/var/lib/db"]})


R1_DB = db("1")


def two_services(rel: str, rid: int, tag: str) -> TargetState:
    """db with a volume, web depending on db; both images at `tag`."""
    services = {
        "db": db(tag),
        "web": svc(f"reg.test/web:{tag}", composition={"depends_on": ["db"]}),
    }
    return target({"a1": app(1, release(rel, services, rid=rid, volumes={"data": {}}))})


def web_only(
    rel: str,
    rid: int,
    tag: str,
    strategy: str | None = None,
    labels: dict[str, str] | None = None,
    **composition: Any,
) -> TargetState:
    """One service, web, at reg.test/web:`tag`, with that update strategy (label)."""
    labels = {**(labels or {}), **({"io.balena.update.strategy": strategy} if strategy else {})}
    web = svc(f"reg.test/web:{tag}", labels=labels, composition=composition)
    return target({"a1": app(1, release(rel, {"web": web}, rid=rid))})


R1 = two_services("r1", 1, "1")
R2 = two_services("r2", 2, "2")
WEB2 = normalize_image_ref("reg.test/web:2")


def index(calls: list[tuple[str, str]], action: str, name_prefix: str) -> int:
    """Position of the first `action` on an object whose name starts with `name_prefix`."""
    hits = [i for i, (a, obj) in enumerate(calls) if a == action and obj.startswith(name_prefix)]
    assert hits, f"no {action} {name_prefix}* in {calls}"
    return hits[0]


async def on_r1(rig: Rig) -> None:
    rig.deploy(R1)
    await rig.converged()
    assert rig.engine.running() == {"db": "r1", "web": "r1"}
    rig.engine.calls.clear()


async def r2_with_web_pull_held(rig: Rig) -> asyncio.Event:
    """r1 running, then r2 deployed with web:2's pull held (set the event to let it go)."""
    await on_r1(rig)
    release_web = rig.engine.hold_pull("reg.test/web:2")
    rig.deploy(R2)
    await rig.until(lambda: WEB2 in rig.engine.pulling, "web:2 pulling")
    return release_web


def main_aux(rel: str, rid: int, tag: str) -> TargetState:
    """The fault suite's release (tests/faults/scenario.py): main (download-then-kill, named
    volume `data`) and aux (hand-over), both at `tag`."""
    handover = {
        "io.balena.update.strategy": "hand-over",
        "io.balena.update.handover-timeout": "30000",
    }
    services = {
        "main": svc(
            f"reg.test/main:{tag}",
            id=1,
            image_id=rid * 10 + 1,
            composition={"volumes": ["data:/data"]},
        ),
        "aux": svc(f"reg.test/aux:{tag}", id=2, image_id=rid * 10 + 2, labels=handover),
    }
    return target({"a1": app(1, release(rel, services, rid=rid, volumes={"data": {}}))})
