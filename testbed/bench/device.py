"""One device's agent, measured from launch to a long soak: start to first heartbeat, memory
idle and during an update of 10 services, CPU and cloud traffic at idle, memory over a soak.

The agent's `apiEndpoint` is a counting TCP proxy in front of the devcloud, so the bytes it
exchanges with the cloud (HTTP headers and bodies, both ways) are counted exactly; requests
are counted from the devcloud's records of polls and reports.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from devcloud.client import DevCloudClient

from .._util import wait_for
from ..container_agent import ContainerAgent
from ..processes import AgentProcess
from ..registry import ThrottledProxy
from ..targets import app, device_target, service
from .common import cpu_s, mean_poll_interval_s, per_day, rss_mb
from .memory import TracedAgent, Tracer, compare

APP = "benchapp"
DEFAULT_POLL_S = 900.0
SOAK_TARGET_MB = 0.5  # RSS growth after the first 1,000 cycles (issue 10)
PROBATION_WAIT_S = 400.0  # a release's probation lasts 300 s by default


def target_for(
    refs: Sequence[str],
    release: str,
    release_id: int,
    poll_ms: int,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    services = {
        f"s{i:02d}": service(ref, service_id=i + 1, image_id=release_id * 100 + i)
        for i, ref in enumerate(refs)
    }
    return device_target(
        {
            APP: app(
                app_id=7, name="bench", release_uuid=release, release_id=release_id,
                services=services,
            )
        },
        config={"BALENA_SUPERVISOR_POLL_INTERVAL": str(poll_ms), **(extra or {})},
    )  # fmt: skip


def pid_of(agent: AgentProcess) -> int:
    if isinstance(agent, ContainerAgent):
        out = agent.docker("inspect", "--format", "{{.State.Pid}}", agent.name).stdout
        return int(out.strip())
    assert agent.pid is not None
    return agent.pid


class Device:
    def __init__(
        self,
        agent: AgentProcess,
        cloud: DevCloudClient,
        proxy: ThrottledProxy | None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.agent, self.cloud, self.proxy, self.log = agent, cloud, proxy, log
        self.uuid = agent.uuid
        self.pid = 0
        self.poll_ms = 1000
        self.release = ("", 0)
        self.refs: Sequence[str] = ()

    def _status(self, since: float | None = None) -> tuple[str | None, str | None]:
        entry = self.cloud.device(self.uuid, since=since)["apps_update_status"].get(APP) or {}
        return entry.get("release_uuid"), entry.get("status")

    def deploy(self, refs: Sequence[str], release: str, rid: int, poll_ms: int) -> None:
        self.release, self.refs, self.poll_ms = (release, rid), refs, poll_ms
        self.cloud.set_target(self.uuid, target_for(refs, release, rid, poll_ms))

    def start(self, refs: Sequence[str]) -> float:
        """Launch with a first release of `refs`; returns start to first heartbeat (s)."""
        self.deploy(refs, "r1", 1, 1000)
        launched = time.time()
        self.agent.start()
        wait_for(
            "the first poll", 300, lambda: self.cloud.device(self.uuid, since=launched)["polls"]
        )
        first = self.cloud.device(self.uuid, since=launched)["polls"][0]["t"] - launched
        wait_for("r1 done", 300, lambda: self._status(launched) == ("r1", "done"))
        self.pid = pid_of(self.agent)
        return first

    def update(self, refs: Sequence[str]) -> dict[str, Any]:
        """A new release of `refs`: peak RSS sampled every 0.1 s until `done`."""
        since = time.time()
        before = rss_mb(self.pid)
        self.deploy(refs, "r2", 2, 1000)
        peak = 0.0
        deadline = time.monotonic() + 600
        while self._status(since) != ("r2", "done") and time.monotonic() < deadline:
            peak = max(peak, rss_mb(self.pid))
            time.sleep(0.1)
        return {
            "services": len(refs),
            "seconds": round(time.time() - since, 1),
            "rss_before_mb": round(before, 1),
            "rss_peak_mb": round(peak, 1),
            "rss_after_mb": round(rss_mb(self.pid), 1),
        }

    def set_poll(self, poll_ms: int) -> None:
        before = len(self.agent.events_named("config_changed"))
        self.deploy(self.refs, *self.release, poll_ms)
        self.agent.api("POST", "/v1/update", {})
        wait_for(
            "the new interval", 60, lambda: len(self.agent.events_named("config_changed")) > before
        )
        # the poll that brought the change scheduled the next one at the old interval: one more
        # instant poll, so the window sees the new interval from its start
        since = time.time()
        self.agent.api("POST", "/v1/update", {})
        wait_for("a poll at the new interval", 60, lambda: self._polls_since(since))

    def _polls_since(self, since: float) -> int:
        return len(self.cloud.device(self.uuid, since=since)["polls"])

    def idle(self, poll_s: float, window: float, settle: float = 10.0) -> dict[str, Any]:
        """At `poll_s`: RSS after `settle` s, then CPU and cloud traffic over `window` s. The
        window starts once the release has passed probation (issue 14: for 300 s after a
        release is done its containers are inspected every second), so it measures the idle
        device, not the probation; the wait is reported."""
        self.set_poll(int(poll_s * 1000))
        waited = time.monotonic()
        release = self.release[0]
        wait_for(
            f"{release} out of probation",
            PROBATION_WAIT_S,
            lambda: any(
                e.get("release") == release for e in self.agent.events_named("probation_passed")
            ),
        )
        time.sleep(settle)
        out: dict[str, Any] = {"poll_interval_s": poll_s, "window_s": window}
        out["probation_wait_s"] = round(time.monotonic() - waited - settle)
        out["rss_mb"] = round(rss_mb(self.pid), 1)
        proxy = self.proxy
        up0, down0 = (proxy.bytes_up, proxy.bytes_down) if proxy else (0, 0)
        t_wall, c0, t0 = time.time(), cpu_s(self.pid), time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - t0
        cpu = cpu_s(self.pid) - c0
        out["cpu_s_in_window"] = round(cpu, 2)
        out["cpu_s_per_hour"] = round(cpu / elapsed * 3600, 2)
        view = self.cloud.device(self.uuid, since=t_wall)
        polls, reports = len(view["polls"]), len(view["reports"])
        out["polls"], out["reports"] = polls, reports
        if proxy is not None:
            up, down = proxy.bytes_up - up0, proxy.bytes_down - down0
            out["bytes_up"], out["bytes_down"] = up, down
            if polls:
                per_poll = (up + down) / polls
                out["bytes_per_poll"] = round(per_poll)
                out["requests_per_poll"] = round((polls + reports) / polls, 2)
                for label, interval in (
                    ("this_interval", poll_s),
                    ("default_15min", DEFAULT_POLL_S),
                ):
                    n = per_day(1, mean_poll_interval_s(interval))
                    out[f"per_day_{label}"] = {
                        "requests": round(n * (polls + reports) / polls),
                        "kB": round(n * per_poll / 1000, 1),
                        "reports": round(per_day(reports, elapsed))
                        if label == "this_interval"
                        else 0,
                    }
        return out

    def soak(
        self, cycles: int, max_s: float, sample_every: int = 500, warm: int = 1000
    ) -> dict[str, Any]:
        """`cycles` poll/report cycles (see docs/benchmarks.md), bounded by `max_s` seconds.
        With a traced agent (memory.TracedAgent), tracemalloc starts at cycle 0 and the live
        allocations after `warm` cycles are compared with those at the end."""
        self.set_poll(900_000)
        time.sleep(2)
        key = self.agent.api_key()
        tracer = None
        if isinstance(self.agent, TracedAgent):
            tracer = Tracer(self.pid, self.agent.trace_dir)
            tracer.mark()  # tracing starts
        marks: dict[str, Path] = {}
        samples: list[tuple[int, float]] = [(0, round(rss_mb(self.pid), 1))]
        polls0 = len(self.cloud.device(self.uuid)["polls"])
        reports0 = len(self.cloud.device(self.uuid)["reports"])
        start = time.monotonic()
        done = 0
        while done < cycles and time.monotonic() - start < max_s:
            done += 1
            key = self._cycle(done, key)
            if tracer is not None and done == warm:
                time.sleep(2)  # the cycle's report out, as at the end
                marks["warm"] = tracer.mark()
            if done % sample_every == 0:
                samples.append((done, round(rss_mb(self.pid), 1)))
                self.log(
                    f"soak {done} cycles, {time.monotonic() - start:.0f} s, RSS {samples[-1][1]} MB"
                )
        elapsed = time.monotonic() - start
        time.sleep(5)  # let the last report go out
        view = self.cloud.device(self.uuid)
        final = round(rss_mb(self.pid), 1)
        traced: dict[str, Any] = {}
        if tracer is not None and "warm" in marks:
            marks["end"] = tracer.mark()
            traced = compare(marks["warm"], marks["end"])
            traced["tracemalloc_own_mb"] = {
                k: round(json.loads(p.with_suffix(".json").read_text())["overhead"] / 2**20, 1)
                for k, p in marks.items()
            }
        warm_rss = next((rss for n, rss in samples if n >= warm), samples[0][1])
        return {
            "cycles": done,
            "cycles_asked": cycles,
            "seconds": round(elapsed),
            "polls": len(view["polls"]) - polls0,
            "reports": len(view["reports"]) - reports0,
            "rss_start_mb": samples[0][1],
            "rss_after_1000_mb": warm_rss,
            "rss_end_mb": final,
            "growth_mb": round(final - samples[0][1], 1),
            "growth_after_1000_mb": round(final - warm_rss, 1),
            "target_met": final - warm_rss <= SOAK_TARGET_MB,
            "traced": tracer is not None,
            "samples": samples,
            **({"tracemalloc": traced} if traced else {}),
        }

    def _cycle(self, n: int, key: str) -> str:
        """One cycle: a changed target (a config var no part of the agent reads), the instant
        trigger, and a rotated device key (its report); returns the new key. Waits until the
        devcloud has answered the poll."""
        since = time.time()
        self.cloud.set_target(
            self.uuid,
            target_for(self.refs, *self.release, 900_000, extra={"BENCH_SOAK_CYCLE": str(n)}),
        )
        answer = self.agent.api("POST", "/v1/update", {}, key=key)
        if answer.status not in (200, 202, 204):
            raise RuntimeError(f"/v1/update answered {answer.status}: {answer.body}")
        answer = self.agent.api("POST", "/v1/regenerate-api-key", {}, key=key)
        if answer.status != 200:
            raise RuntimeError(f"/v1/regenerate-api-key answered {answer.status}")
        new_key = answer.body if isinstance(answer.body, str) else answer.raw.decode()

        def answered() -> bool:
            polls = self.cloud.device(self.uuid, since=since)["polls"]
            return any(p["status"] == 200 for p in polls)

        wait_for(f"soak poll {n}", 30, answered)
        return new_key.strip()
