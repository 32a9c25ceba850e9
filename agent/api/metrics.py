"""`GET /metrics`: Prometheus text format.

Two kinds of numbers:
- flows (polls and reports by outcome, bytes downloaded, apply durations, lock holds) are
  counted from the agent's own log events (`agent.logs.add_sink`), so metrics and the log
  always agree and no component carries counting code;
- levels (update status per app, heartbeat age, download progress, waiting on a lock) are read
  at scrape time from the status board, the poller, the reporter and the reconciler — the same
  sources the reporter and the rest of the API read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.model.update_status import IN_PROGRESS

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.registry import CollectorRegistry

    from agent.daemon import Agent

# prometheus_client (≈ 1 MB with what it imports) is loaded on the first scrape, not at start:
# until then the flows are plain numbers. CONTENT_TYPE is prometheus_client's
# CONTENT_TYPE_LATEST (checked by tests/unit/api/test_metrics.py).
CONTENT_TYPE = "text/plain; version=1.0.0; charset=utf-8"
_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, math.inf)


class _Histogram:
    """Bucket counts, sum and count of observations: a Prometheus histogram's numbers."""

    def __init__(self, name: str, doc: str) -> None:
        self.name, self.doc = name, doc
        self.counts = [0] * len(_DURATION_BUCKETS)  # per bucket, not cumulative
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.total += value
        for i, bound in enumerate(_DURATION_BUCKETS):
            if value <= bound:
                self.counts[i] += 1
                break


class AgentMetrics:
    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._registry: CollectorRegistry | None = None
        self.poll_events: dict[str, int] = {}  # outcome -> count (new_target, error)
        self.report_failures = 0
        self.download_bytes = 0
        self.apply_seconds = _Histogram(
            "device_agent_apply_duration_seconds",
            "Time from a release's first update status to done",
        )
        self.lock_held_seconds = _Histogram(
            "device_agent_lock_held_seconds",
            "How long an app held its update lock, as seen by the agent",
        )
        self._pulled: dict[str, int] = {}  # image -> bytes seen so far in its current pull
        self._opened: dict[tuple[str, str], float] = {}  # (app, release) -> first status time
        self._locked: dict[Any, float] = {}  # app id -> when its lock was first seen

    def render(self) -> bytes:
        from prometheus_client.exposition import generate_latest

        if self._registry is None:
            from prometheus_client.registry import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(_Flows(self))
            self._registry.register(_Levels(self._agent, self))
        return generate_latest(self._registry)

    def observe(self, event: MutableMapping[str, Any]) -> None:
        """A log event (see agent.logs.add_sink)."""
        name = event.get("event")
        if name == "target_fetched":
            self.poll_events["new_target"] = self.poll_events.get("new_target", 0) + 1
        elif name == "poll_failed":
            self.poll_events["error"] = self.poll_events.get("error", 0) + 1
        elif name == "report_failed":
            self.report_failures += 1
        elif name == "pull_started":
            self._pulled[str(event.get("image"))] = 0
        elif name == "download_progress":
            image, nbytes = str(event.get("image")), event.get("bytes")
            if isinstance(nbytes, int):
                seen = self._pulled.get(image, 0)
                if nbytes > seen:
                    self.download_bytes += nbytes - seen
                    self._pulled[image] = nbytes
        elif name == "update_status_changed":
            self._status_changed(event)
        elif name == "lock_held":
            self._locked.setdefault(event.get("app_id"), time.time())
        elif name == "lock_released":
            since = self._locked.pop(event.get("app_id"), None)
            if since is not None:
                self.lock_held_seconds.observe(max(0.0, time.time() - since))

    def _status_changed(self, event: MutableMapping[str, Any]) -> None:
        key = (str(event.get("app_uuid")), str(event.get("release")))
        status, at = event.get("status"), event.get("since")
        at = float(at) if isinstance(at, int | float) else time.time()
        if status in IN_PROGRESS:
            self._opened.setdefault(key, at)
        elif status == "done":
            started = self._opened.pop(key, None)
            if started is not None:
                self.apply_seconds.observe(max(0.0, at - started))
        else:
            self._opened.pop(key, None)


class _Flows:
    """The counted flows, as Prometheus families at scrape time."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily

        m = self._metrics
        polls = CounterMetricFamily(
            "device_agent_poll_events",
            "Target-state polls that fetched a new target or failed",
            labels=["outcome"],
        )
        for outcome, count in sorted(m.poll_events.items()):
            polls.add_metric([outcome], count)
        yield polls
        yield CounterMetricFamily(
            "device_agent_report_failures", "State reports that failed", m.report_failures
        )
        yield CounterMetricFamily(
            "device_agent_download_bytes", "Bytes downloaded by image pulls", m.download_bytes
        )
        yield _histogram(m.apply_seconds)
        yield _histogram(m.lock_held_seconds)
        from agent.api.loghub import STATS

        yield CounterMetricFamily(
            "device_agent_api_log_lines_dropped",
            "Log lines dropped for /v2/local/logs clients reading slower than the services log",
            STATS.lines,
        )


def _histogram(h: _Histogram) -> Metric:
    from prometheus_client.core import HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    cumulative, buckets = 0, []
    for bound, count in zip(_DURATION_BUCKETS, h.counts, strict=True):
        cumulative += count
        buckets.append((floatToGoString(bound), cumulative))
    return HistogramMetricFamily(h.name, h.doc, buckets=buckets, sum_value=h.total)


class _Levels:
    """Read at scrape time, from the one source of truth."""

    def __init__(self, agent: Agent, metrics: AgentMetrics) -> None:
        self._agent = agent
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        agent, now = self._agent, time.time()
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
        for uuid, view in sorted(agent.status.apps.items()):
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
        plan = agent.reconciler.last_plan
        for uuid, app_plan in sorted((plan.apps if plan else {}).items()):
            waiting.add_metric([uuid], 1 if app_plan.blocked_by_lock else 0)
        yield waiting
        yield from _window_metrics(agent, now)
        polls = CounterMetricFamily(
            "device_agent_polls", "Target-state polls, all outcomes", labels=[]
        )
        polls.add_metric([], agent.poller.polls)
        yield polls
        reports = CounterMetricFamily("device_agent_reports_sent", "State reports acknowledged")
        reports.add_metric([], agent.reporter.reports_sent)
        yield reports
        yield _age(
            "device_agent_heartbeat_age_seconds",
            "Seconds since the last successful target-state poll (the heartbeat)",
            agent.status.last_poll,
            now,
        )
        yield _age(
            "device_agent_report_age_seconds",
            "Seconds since the last acknowledged state report",
            agent.status.last_report,
            now,
        )
        conn = agent.connectivity.view
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
        local.add_metric([], 1 if agent.local_mode else 0)
        yield local
        converged = GaugeMetricFamily(
            "device_agent_converged", "1 when the engine matches the target"
        )
        converged.add_metric([], 1 if agent.reconciler.converged.is_set() else 0)
        yield converged


def _window_metrics(agent: Agent, now: float) -> Iterator[Metric]:
    """Apps whose downloaded release waits for the update window, and when it next opens."""
    from prometheus_client.core import GaugeMetricFamily

    held = GaugeMetricFamily(
        "device_agent_update_window_waiting",
        "1 while an app's downloaded release waits for the update window",
        labels=["app", "app_uuid"],
    )
    plan = agent.reconciler.last_plan
    for uuid, app_plan in sorted((plan.apps if plan else {}).items()):
        view = agent.status.apps.get(uuid)
        held.add_metric([view.name if view else "", uuid], 1 if app_plan.held else 0)
    yield held
    verdict = agent.reconciler.window
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
