"""`GET /metrics`: Prometheus text format.

Two kinds of numbers:
- flows (polls and reports by outcome, bytes downloaded, apply durations, lock holds) are
  counted from the agent's bus events as they happen (agent/api/metrics_flows.py), so no
  component carries counting code;
- levels (update status per app, heartbeat age, download progress, waiting on a lock) are read
  at scrape time from the status board, the poller, the reporter and the reconciler (through the
  API's ports, agent/api/ports.py) — the same sources the reporter and the rest of the API read.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from agent import __version__
from agent.api.metrics_flows import FlowFamilies, Flows
from agent.events.bus import Bus

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.registry import CollectorRegistry

    from agent.api.ports import ApiContext

# prometheus_client (≈ 1 MB with what it imports) is loaded on the first scrape, not at start:
# until then the flows are plain numbers. CONTENT_TYPE is prometheus_client's
# CONTENT_TYPE_LATEST (checked by tests/unit/api/test_metrics.py).
CONTENT_TYPE = "text/plain; version=1.0.0; charset=utf-8"


class AgentMetrics:
    def __init__(self, ctx: ApiContext, bus: Bus) -> None:
        """`bus`: the agent's; the flows are counted from its events from now on."""
        self._ctx = ctx
        self._registry: CollectorRegistry | None = None
        self.flows = Flows()
        self.flows.subscribe(bus)

    async def scrape(self) -> bytes:
        """`render` for GET /metrics. The first scrape loads prometheus_client (and the log
        hub's module) in a worker thread: importing them on the event loop blocked it for over
        100 ms. The numbers are read on the loop, where they change."""
        if self._registry is None:
            await asyncio.to_thread(_load_scrape_modules)
        return self.render()

    def render(self) -> bytes:
        from prometheus_client.exposition import generate_latest

        if self._registry is None:
            from prometheus_client.registry import CollectorRegistry

            from agent.api.loghub import STATS

            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(FlowFamilies(self.flows, lambda: STATS.lines))
            self._registry.register(_Levels(self._ctx))
        return generate_latest(self._registry)


_SCRAPE_MODULES = (
    "prometheus_client.exposition",
    "prometheus_client.registry",
    "prometheus_client.core",
    "prometheus_client.utils",
    "agent.api.loghub",
)


def _load_scrape_modules() -> None:
    for name in _SCRAPE_MODULES:
        importlib.import_module(name)


class _Levels:
    """Read at scrape time, from the one source of truth."""

    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ctx, now = self._ctx, time.time()
        info = GaugeMetricFamily("device_agent_info", "The agent's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        status = GaugeMetricFamily(
            "device_agent_update_status",
            "1 for each app's current update status",
            labels=["app", "app_uuid", "release", "status"],
        )
        since = GaugeMetricFamily(
            "device_agent_update_status_age_seconds",
            "Seconds since each app's update status last changed",
            labels=["app_uuid"],
        )
        progress = GaugeMetricFamily(
            "device_agent_download_progress_percent",
            "Download progress per service",
            labels=["app_uuid", "service"],
        )
        for uuid, view in sorted(ctx.status.apps.items()):
            value = view.update_status.value if view.update_status else "none"
            status.add_metric([view.name, uuid, view.release_uuid or "", value], 1)
            since.add_metric([uuid], max(0.0, now - view.since))
            for name, svc in sorted(view.services.items()):
                if svc.download_progress is not None:
                    progress.add_metric([uuid, name], svc.download_progress)
        yield status
        yield since
        yield progress
        waiting = GaugeMetricFamily(
            "device_agent_update_waiting_for_lock",
            "1 while an app's downloaded update waits for its update lock",
            labels=["app_uuid"],
        )
        plan = ctx.apply.last_plan
        for uuid, app_plan in sorted((plan.apps if plan else {}).items()):
            waiting.add_metric([uuid], 1 if app_plan.blocked_by_lock else 0)
        yield waiting
        yield from _window_metrics(ctx, now)
        polls = CounterMetricFamily(
            "device_agent_polls", "Target-state polls, all outcomes", labels=[]
        )
        polls.add_metric([], ctx.poller.polls)
        yield polls
        reports = CounterMetricFamily("device_agent_reports_sent", "State reports acknowledged")
        reports.add_metric([], ctx.reporter.reports_sent)
        yield reports
        yield _age(
            "device_agent_heartbeat_age_seconds",
            "Seconds since the last successful target-state poll (the heartbeat)",
            ctx.status.last_poll,
            now,
        )
        yield _age(
            "device_agent_report_age_seconds",
            "Seconds since the last acknowledged state report",
            ctx.status.last_report,
            now,
        )
        conn = ctx.connectivity.view
        device = GaugeMetricFamily(
            "device_agent_device_status",
            "1 for the device status the dashboard shows, as the device sees it",
            labels=["status", "legacy_status"],
        )
        links = GaugeMetricFamily(
            "device_agent_link_up", "1 when a link is up (heartbeat, cloudlink)", labels=["link"]
        )
        if conn is not None:
            device.add_metric([conn.view.status.value, conn.view.legacy.value], 1)
            links.add_metric(["heartbeat"], 1 if conn.heartbeat_ok else 0)
            if conn.cloudlink.enabled:
                links.add_metric(["cloudlink"], 1 if conn.cloudlink.ok else 0)
        yield device
        yield links
        if conn is not None and conn.cloudlink.last_handshake is not None:
            yield _age(
                "device_agent_cloudlink_handshake_age_seconds",
                "Seconds since the tunnel's latest handshake",
                conn.cloudlink.last_handshake,
                now,
            )
        local = GaugeMetricFamily("device_agent_local_mode", "1 in local mode")
        local.add_metric([], 1 if ctx.targets.local_mode else 0)
        yield local
        converged = GaugeMetricFamily(
            "device_agent_converged", "1 when the engine matches the target"
        )
        converged.add_metric([], 1 if ctx.apply.converged.is_set() else 0)
        yield converged


def _window_metrics(ctx: ApiContext, now: float) -> Iterator[Metric]:
    """Apps whose downloaded release waits for the update window, and when it next opens."""
    from prometheus_client.core import GaugeMetricFamily

    held = GaugeMetricFamily(
        "device_agent_update_window_waiting",
        "1 while an app's downloaded release waits for the update window",
        labels=["app", "app_uuid"],
    )
    plan = ctx.apply.last_plan
    for uuid, app_plan in sorted((plan.apps if plan else {}).items()):
        view = ctx.status.apps.get(uuid)
        held.add_metric([view.name if view else "", uuid], 1 if app_plan.held else 0)
    yield held
    verdict = ctx.apply.window
    opens = GaugeMetricFamily(
        "device_agent_update_window_next_open_seconds",
        "Seconds until the update window opens (0 while open; NaN: manual, unknown clock)",
    )
    if verdict.hold is None:
        opens.add_metric([], 0.0)
    else:
        at = verdict.next_open
        opens.add_metric([], math.nan if at is None else max(0.0, at - now))
    yield opens


def _age(name: str, doc: str, at: float | None, now: float) -> GaugeMetricFamily:
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(name, doc)
    family.add_metric([], math.nan if at is None else max(0.0, now - at))
    return family
