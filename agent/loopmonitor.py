"""TEST ONLY: find what blocks the event loop, with its stack. Off unless
$DEVICE_AGENT_SLOW_CALLBACK_MS is set (the integration and fault suites set it to 50); never set
on a device.

When on, every callback the loop runs goes through a wrapper (`asyncio.Handle._run`) that publishes
which callback runs since when. A monitor thread samples the loop thread's stack
(`sys._current_frames()`) every `TICK_S` once a callback has run half the threshold. When a
callback that ran longer than the threshold ends, it is judged; if it blocked the loop, one
`slow_callback` event is logged with the stack sampled most often while it ran — the blocking
call, not just asyncio's "Executing <Handle> took 0.1 s" line. A callback still running after
`HANG_FACTOR` × the threshold is reported at once (it may never end).

False positives on a loaded machine: what counts is the callback's wall time *minus the time
its thread spent waiting for a CPU* — the run-queue delay from /proc/self/task/<tid>/schedstat,
read (one pread) by the loop's thread as each callback starts and ends, so it is exact — and
minus the time the monitor's thread held the GIL during its samples. A callback that sleeps,
waits on a socket, a file, a lock or a child process is off the CPU but not runnable, so that
time counts; a callback that was merely preempted by other processes on a busy 2-core machine
is runnable, so that time does not. CPU time spent by the callback counts (a long computation
blocks the loop as surely as a sleep). Without schedstat, wall time is used.
The same holds for another thread of the agent (a worker of `asyncio.to_thread`) that holds the
GIL the loop waits for: if that thread waited for a CPU meanwhile (its run-queue delay, read for
every other thread as the monitor starts sampling and again as the callback ends), the loop was
starved by the machine, not blocked by the agent, and the longest such wait is not counted.
Its CPU time still counts: a thread that computes while holding the GIL does block the loop.

The loop is NOT put in asyncio's debug mode: there, asyncio and aiohttp record a stack
(traceback.extract_stack, which stats every cached source file) for every future, handle and
client request — CPU the agent never spends on a device, and under a loaded test machine a
source of 50 ms stalls in the monitor's own bookkeeping (CI saw one in aiohttp's
ClientRequest.__init__).

Logged but not the agent's doing (the event's `excused` says why, see `excuse`): the SIGUSR2
test hook, stack recording by a debug-mode loop, kernel stalls inside asyncio's own non-blocking
socket calls, and `Thread.start` waiting for a new worker thread to be scheduled.
A C call that holds the GIL throughout can't be sampled: the event then says so, and its
`callback` tells what ran. Such an unsampled stall is
excused (`unsampled`) below `UNSAMPLED_FACTOR` × the threshold: on a busy VM a loop thread that
the guest sees running may not be (steal time), and a starved sampler sees nothing; a real
blocking call releases the GIL and is sampled, and a C call holding it longer still fails.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import collections
import os
import sys
import threading
import time
from types import FrameType
from typing import Any

import structlog

log = structlog.get_logger("agent.loopmonitor")

ENV = "DEVICE_AGENT_SLOW_CALLBACK_MS"
TICK_S = 0.01  # sampling period (each sample takes the GIL from the loop for a moment)
HANG_FACTOR = 10  # a callback still running after 10 × the threshold is reported at once
# a slow callback the sampler never caught (no Python frame seen) is only a failure past this
# many × the threshold: below it, a busy VM (steal time, a starved sampler thread) explains it
UNSAMPLED_FACTOR = 4
MAX_STACK = 40  # frames kept in a logged stack


def _open_schedstat(tid: int) -> int | None:
    try:
        return os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _threads_runqueue_wait(skip: set[int]) -> dict[int, float]:
    """Run-queue delay (seconds) of each thread of this process but those in `skip` (native
    ids), from /proc/self/task/<tid>/schedstat; threads that can't be read are left out."""
    waits: dict[int, float] = {}
    try:
        tids = [int(name) for name in os.listdir("/proc/self/task")]
    except (OSError, ValueError):
        return waits
    for tid in tids:
        if tid in skip:
            continue
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as handle:
                waits[tid] = int(handle.read(128).split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return waits


def starved_by_others(before: dict[int, float], after: dict[int, float]) -> float:
    """The longest run-queue delay another thread gathered between the two readings: how long
    a thread holding the GIL the loop waited for may itself have waited for a CPU."""
    return max((after[tid] - wait for tid, wait in before.items() if tid in after), default=0.0)


def format_stack(frame: FrameType | None, outermost: Any = None) -> str:
    """Innermost call last, with qualified function names; frames from `outermost` (a code
    object: the monitor's wrapper around the callback) outwards are the loop's own: left out."""
    lines: list[str] = []
    while frame is not None and len(lines) < MAX_STACK:
        code = frame.f_code
        if code is outermost:
            break
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_qualname}')
        frame = frame.f_back
    return "\n".join(reversed(lines))


class LoopMonitor:
    def __init__(self, threshold_s: float) -> None:
        self.threshold_s = threshold_s
        self.reported = 0
        self._current: tuple[int, float, Any] | None = None  # seq, start, handle
        self._seq = 0
        self._reported_seq = -1
        # the monitor thread's samples of the callback `_sampled_seq`, and the time it held the
        # GIL meanwhile (which the loop may have waited for: the monitor's time, not the loop's)
        self._sampled_seq = -1
        self._stacks: collections.Counter[str] = collections.Counter()
        self._held = 0.0
        # the other threads' run-queue delays as sampling of callback `_sampled_seq` began
        self._others: dict[int, float] = {}
        self._main_ident = threading.get_ident()
        self._main_tid = threading.get_native_id()
        self._schedstat = _open_schedstat(threading.get_native_id())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="loop-monitor", daemon=True)
        self._original: Any = None
        self._wrapper_code: Any = None

    def _runqueue_wait_s(self) -> float | None:
        """Seconds the loop's thread has spent runnable but waiting for a CPU (exact when
        read from the loop's own thread: its waits so far are all accounted), or None."""
        for _ in range(2):
            if self._schedstat is None:
                self._schedstat = _open_schedstat(self._main_tid)
                if self._schedstat is None:
                    return None
            try:
                return int(os.pread(self._schedstat, 128, 0).split()[1]) / 1e9
            except OSError:  # e.g. the descriptor was closed under us: open it again, once
                self._schedstat = None
            except (ValueError, IndexError):
                return None
        return None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._original = original = asyncio.events.Handle._run
        monitor = self

        def _run(handle: asyncio.Handle) -> None:
            monitor._seq += 1
            seq = monitor._seq
            wait0 = monitor._runqueue_wait_s()  # one pread, ~0.5 µs
            start = time.perf_counter()
            monitor._current = (seq, start, handle)
            try:
                original(handle)
            finally:
                monitor._current = None
                wall = time.perf_counter() - start
                if wall > monitor.threshold_s and monitor._reported_seq != seq:
                    monitor._finish(seq, handle, wall, wait0)

        self._wrapper_code = _run.__code__
        asyncio.events.Handle._run = _run  # type: ignore[method-assign,assignment]
        self._thread.start()
        log.warning("loop_monitor_on", threshold_ms=round(self.threshold_s * 1000))

    def uninstall(self) -> None:
        self._stop.set()
        if self._original is not None:
            asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
            self._original = None
        if self._thread.is_alive():
            self._thread.join(1.0)
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None

    def _finish(self, seq: int, handle: Any, wall: float, wait0: float | None) -> None:
        """In the loop's thread, as a callback that ran longer than the threshold ends:
        report it unless waiting for a CPU (or for the monitor's GIL) explains the excess."""
        wait1 = self._runqueue_wait_s()
        waited = wait1 - wait0 if wait0 is not None and wait1 is not None else None
        sampled = self._sampled_seq == seq
        held = self._held if sampled else 0.0
        effective = wall - (waited or 0.0) - held
        if effective > self.threshold_s and sampled and self._others:
            after = _threads_runqueue_wait({self._main_tid, self._thread.native_id or 0})
            effective -= starved_by_others(self._others, after)
        if effective <= self.threshold_s:
            return
        stacks = self._stacks if sampled else None
        if stacks:
            self._report(seq, handle, wall, effective, waited, stacks.most_common(1)[0][0])
            return
        stack = "(not sampled: a C call held the GIL or the machine was busy; see callback)"
        short = effective < UNSAMPLED_FACTOR * self.threshold_s
        self._report(seq, handle, wall, effective, waited, stack, "unsampled" if short else None)

    def _watch(self) -> None:
        """Sample the loop thread's stack while a callback runs long. Reports itself only a
        callback still running after HANG_FACTOR × the threshold (it may never end); the
        others are judged when they end (`_finish`), when the CPU wait is known exactly."""
        while not self._stop.wait(TICK_S):
            woke = time.perf_counter()
            current = self._current
            if current is None:
                continue
            seq, started, handle = current
            if seq != self._sampled_seq:
                self._stacks = collections.Counter()
                self._held = 0.0
                self._others = {}
                self._sampled_seq = seq
            if self._reported_seq == seq or woke - started < self.threshold_s / 2:
                continue  # short so far: don't take the GIL from it to sample
            if not self._stacks:  # the first sample of this callback
                self._others = _threads_runqueue_wait({self._main_tid, threading.get_native_id()})
            frame = sys._current_frames().get(self._main_ident)
            if self._current is None or self._current[0] != seq:
                continue  # it ended while we looked
            self._stacks[format_stack(frame, self._wrapper_code)] += 1
            wall = time.perf_counter() - started
            if wall > HANG_FACTOR * self.threshold_s:
                stack = self._stacks.most_common(1)[0][0]
                self._report(seq, handle, wall, wall - self._held, None, stack)
            self._held += time.perf_counter() - woke

    def _report(
        self,
        seq: int,
        handle: Any,
        wall: float,
        effective: float,
        waited: float | None,
        stack: str,
        excused: str | None = None,
    ) -> None:
        self._reported_seq = seq
        self.reported += 1
        try:
            what = repr(handle)[:2000]
        except Exception:  # a repr must never break the monitor
            what = type(handle).__name__
        log.error(
            "slow_callback",
            callback=what,
            ran_ms=round(wall * 1000, 1),
            blocking_ms=round(effective * 1000, 1),
            cpu_wait_ms=None if waited is None else round(waited * 1000, 1),
            threshold_ms=round(self.threshold_s * 1000),
            excused=excused or excuse(stack),
            stack=stack,
        )


def excuse(stack: str) -> str | None:
    """Why a slow callback is not the agent blocking its loop, or None when it is:

    - `deliberate`: test scaffolding (testbed/testhooks.py, the SIGUSR2 hook) blocks it on
      purpose;
    - `debug_overhead`: a debug-mode loop recording where a future, a handle or a request was
      made (traceback.extract_stack reading source lines) — not the agent's cost on a device;
    - `loop_internal`: the innermost frame is asyncio's own non-blocking machinery (a
      non-blocking connect or send the kernel stalled: page faults, reclaim on a thrashing
      machine);
    - `thread_start`: `Thread.start` waiting for a new thread (a worker of `asyncio.to_thread`,
      the child watcher of a subprocess) to be scheduled at all — a busy machine's scheduler,
      not I/O."""
    lines = stack.splitlines()
    if any("/testbed/testhooks.py" in line and "in block_the_loop" in line for line in lines):
        return "deliberate"
    if any("/traceback.py" in line and "extract_stack" in line for line in lines):
        return "debug_overhead"
    if lines and "/asyncio/" in lines[-1]:
        return "loop_internal"
    tail = lines[-3:]
    if any("in Thread.start" in line for line in tail) and "in Condition.wait" in tail[-1]:
        return "thread_start"
    return None


def install_from_env(loop: asyncio.AbstractEventLoop) -> LoopMonitor | None:
    """The monitor, if $DEVICE_AGENT_SLOW_CALLBACK_MS asks for it (test only)."""
    raw = os.environ.get(ENV, "")
    try:
        threshold_ms = float(raw)
    except ValueError:
        return None
    if not threshold_ms > 0:
        return None
    monitor = LoopMonitor(threshold_ms / 1000.0)
    monitor.install(loop)
    return monitor
