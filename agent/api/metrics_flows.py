"""The flows behind `GET /metrics`: polls and reports by outcome, bytes downloaded, apply
durations and lock holds, counted from the agent's bus events as they happen (the levels are
read at scrape time, agent/api/metrics.py). Plain numbers: prometheus_client is only loaded
by a scrape."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from agent.events.bus import Bus
from agent.events.kinds import (
    DownloadProgress,
    PollDone,
    PullStarted,
    ReportFailed,
    UpdateLockHeld,
    UpdateLockReleased,
    UpdateStatusChanged,
)
from agent.model.update_status import IN_PROGRESS, UpdateStatus

if TYPE_CHECKING:
    from prometheus_client.core import Metric

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, math.inf)


class Histogram:
    """Bucket counts, sum and count of observations: a Prometheus histogram's numbers."""

    def __init__(self, name: str, doc: str) -> None:
        self.name, self.doc = name, doc
        self.counts = [0] * len(DURATION_BUCKETS)  # per bucket, not cumulative
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.total += value
        for i, bound in enumerate(DURATION_BUCKETS):
            if value <= bound:
                self.counts[i] += 1
                break


class Flows:
    """The counters, fed by `subscribe(bus)`."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.poll_events: dict[str, int] = {}  # outcome -> count (new_target, error)
        self.report_failures = 0
        self.download_bytes = 0
        self.apply_seconds = Histogram(
            "device_agent_apply_duration_seconds",
            "Time from a release's first update status to done",
        )
        self.lock_held_seconds = Histogram(
            "device_agent_lock_held_seconds",
            "How long an app held its update lock, as seen by the agent",
        )
        self._pulled: dict[str, int] = {}  # image -> bytes seen so far in its current pull
        self._opened: dict[tuple[str, str | None], float] = {}  # (app, release) -> first status
        self._locked: dict[int, float] = {}  # app id -> when its lock was first seen

    def subscribe(self, bus: Bus) -> None:
        bus.subscribe(PollDone, self._poll_done)
        bus.subscribe(ReportFailed, self._report_failed)
        bus.subscribe(PullStarted, self._pull_started)
        bus.subscribe(DownloadProgress, self._download_progress)
        bus.subscribe(UpdateStatusChanged, self._update_status_changed)
        bus.subscribe(UpdateLockHeld, self._lock_held)
        bus.subscribe(UpdateLockReleased, self._lock_released)

    def _count_poll(self, outcome: str) -> None:
        self.poll_events[outcome] = self.poll_events.get(outcome, 0) + 1

    def _poll_done(self, event: PollDone) -> None:
        if not event.ok:
            self._count_poll("error")
        elif event.new_target:
            self._count_poll("new_target")

    def _report_failed(self, _event: ReportFailed) -> None:
        self.report_failures += 1

    def _pull_started(self, event: PullStarted) -> None:
        self._pulled[event.image] = 0  # a retry starts from zero again

    def _download_progress(self, event: DownloadProgress) -> None:
        seen = self._pulled.get(event.image, 0)
        if event.nbytes > seen:
            self.download_bytes += event.nbytes - seen
            self._pulled[event.image] = event.nbytes

    def _update_status_changed(self, event: UpdateStatusChanged) -> None:
        key = (event.app_uuid, event.release_uuid)
        if event.status in IN_PROGRESS:
            self._opened.setdefault(key, event.at)
        elif event.status is UpdateStatus.DONE:
            started = self._opened.pop(key, None)
            if started is not None:
                self.apply_seconds.observe(max(0.0, event.at - started))
        else:
            self._opened.pop(key, None)

    def _lock_held(self, event: UpdateLockHeld) -> None:
        self._locked.setdefault(event.app_id, self._clock())

    def _lock_released(self, event: UpdateLockReleased) -> None:
        since = self._locked.pop(event.app_id, None)
        if since is not None:
            self.lock_held_seconds.observe(max(0.0, self._clock() - since))


class FlowFamilies:
    """The counted flows, as Prometheus families at scrape time."""

    def __init__(self, flows: Flows, api_lines_dropped: Callable[[], int]) -> None:
        self._flows = flows
        self._api_lines_dropped = api_lines_dropped

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily

        m = self._flows
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
        yield CounterMetricFamily(
            "device_agent_api_log_lines_dropped",
            "Log lines dropped for /v2/local/logs clients reading slower than the services log",
            self._api_lines_dropped(),
        )


def _histogram(h: Histogram) -> Metric:
    from prometheus_client.core import HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    cumulative, buckets = 0, []
    for bound, count in zip(DURATION_BUCKETS, h.counts, strict=True):
        cumulative += count
        buckets.append((floatToGoString(bound), cumulative))
    return HistogramMetricFamily(h.name, h.doc, buckets=buckets, sum_value=h.total)
