"""The executor's grouping of a pass's steps: consecutive starts may run together."""

from __future__ import annotations

from agent.model import ContainerStatus
from agent.reconcile.executor import batches
from agent.reconcile.steps import Kill, RemoveNetwork, Start
from tests.unit.reconcile.factories import app, container, release, svc, target


def test_consecutive_starts_are_grouped_and_everything_else_runs_alone():
    tgt = target({"a1": app(1, release("r1", {"x": svc("x:1"), "y": svc("y:1")}))})
    spec = tgt.apps["a1"]
    assert spec.release is not None
    sx, sy = (Start(spec, spec.release.services[n]) for n in ("x", "y"))
    k1 = Kill(container("c1", "a1", "old", status=ContainerStatus.RUNNING))
    k2 = Kill(container("c2", "a1", "older"))
    rm = RemoveNetwork("1_old", "a1")
    assert batches([k1, k2, sx, sy, rm]) == [[k1], [k2], [sx, sy], [rm]]
    assert batches([sx, rm, sy]) == [[sx], [rm], [sy]]
    assert batches([]) == []
