"""The apply loop survives a pass that raises anything: the pass fails, is logged with its
stack, retried with backoff, and the app's status says why until a pass succeeds."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import structlog
from structlog.testing import capture_logs

from agent.model import CurrentState
from agent.reconcile.loop import Reconciler
from agent.reconcile.steps import Plan
from agent.retry import Backoff
from agent.status.board import StatusBoard
from agent.store import Store
from tests.unit.reconcile.factories import app, release, svc, target
from tests.unit.reconcile.sim import SimEngine

TARGET = target({"a1": app(1, release("r1", {"main": svc("reg/main:1")}), name="main")})


class Engine:
    """The engine's reads from a simulated state; the first `raise_reads` reads raise."""

    def __init__(self, sim: SimEngine, raise_reads: int = 0) -> None:
        self.sim = sim
        self.raise_reads = raise_reads

    async def current_state(self, _managed: frozenset[str]) -> CurrentState:
        if self.raise_reads > 0:
            self.raise_reads -= 1
            raise KeyError("Labels")  # not an AgentError: a bug or an odd engine answer
        return self.sim.state


class Executor:
    """Applies steps to the simulation; the first `raise_runs` runs raise ValueError."""

    def __init__(self, sim: SimEngine, raise_runs: int = 0) -> None:
        self.sim = sim
        self.raise_runs = raise_runs
        self.runs = 0

    async def run(
        self, plan: Plan, _current: CurrentState, _progress: Any, _cancel: threading.Event
    ) -> list[Any]:
        self.runs += 1
        if self.raise_runs > 0:
            self.raise_runs -= 1
            raise ValueError("invalid port range '8000-8002'")
        for step in plan.steps:
            self.sim.apply(step)
        return []


def reconciler(
    tmp_path: Path, engine: Engine, executor: Executor
) -> tuple[Reconciler, StatusBoard]:
    board = StatusBoard(Store(tmp_path / "data"))
    (tmp_path / "locks").mkdir()
    rec = Reconciler(
        engine=engine,  # type: ignore[arg-type]
        executor=executor,  # type: ignore[arg-type]
        status=board,
        images=SimpleNamespace(ids=set()),  # type: ignore[arg-type]
        lock_dir=tmp_path / "locks",
        override_lock=lambda: False,
    )
    rec._backoff = Backoff(base_s=0.2, cap_s=0.4)
    rec.set_target(TARGET)
    return rec, board


async def _until(check: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110  (polls plain attributes)
            await asyncio.sleep(0.01)


async def test_a_pass_that_raises_fails_that_pass_and_the_app_says_why(tmp_path):
    sim = SimEngine(CurrentState(), TARGET)
    executor = Executor(sim, raise_runs=2)
    rec, board = reconciler(tmp_path, Engine(sim), executor)
    reasons: list[str | None] = []

    async def scenario() -> None:
        task = asyncio.create_task(rec.run())
        await _until(lambda: (board.app("a1") or SimpleNamespace(reason=None)).reason)
        reasons.append(board.app("a1").reason)  # type: ignore[union-attr]
        await _until(rec.converged.is_set)
        assert not task.done(), "the apply loop ended"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with capture_logs() as logs:
        await scenario()
    assert reasons[0] is not None
    assert reasons[0].startswith("apply failed: ValueError: invalid port range '8000-8002'")
    assert "retrying in" in reasons[0]
    failed = [e for e in logs if e["event"] == "apply_pass_failed"]
    assert len(failed) == 2
    assert isinstance(failed[0]["exc_info"], ValueError)  # rendered as a stack by structlog
    retries = [e for e in logs if e["event"] == "apply_retry_scheduled"]
    assert [e["attempt"] for e in retries] == [1, 2]  # backoff grows with each failed pass
    assert executor.runs >= 3  # the two failed passes, then the ones that converge
    view = board.app("a1")
    assert view is not None and view.reason is None and str(view.update_status) == "done"


async def test_a_raise_before_planning_marks_every_app_and_the_loop_goes_on(tmp_path):
    sim = SimEngine(CurrentState(), TARGET)
    rec, board = reconciler(tmp_path, Engine(sim, raise_reads=1), Executor(sim))

    async def scenario() -> str | None:
        task = asyncio.create_task(rec.run())
        await _until(lambda: rec.last_error is not None)
        seen = board.app("a1")
        await _until(rec.converged.is_set)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return seen.reason if seen is not None else None

    with capture_logs():
        reason = await scenario()
    assert reason is not None and reason.startswith("apply failed: KeyError: 'Labels'")
    assert rec.last_error is None


def test_the_stack_is_in_the_json_log_line(capsys):
    structlog.configure(
        processors=[structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(),
    )
    try:
        try:
            raise ValueError("boom")
        except ValueError as exc:
            structlog.get_logger().error("apply_pass_failed", exc_info=exc)
    finally:
        structlog.reset_defaults()
    out = capsys.readouterr().out
    assert '"exception": "Traceback' in out and "ValueError: boom" in out
