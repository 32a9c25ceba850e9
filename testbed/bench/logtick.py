"""`python -m testbed.bench.logtick [RATE [SECONDS]]`: the cloud log path's CPU alone, per tick.

The full bench (`scripts/bench --only logs`) measures a whole agent, whose other tasks (state
reports, connectivity checks) wake it too; at 50 lines a second their noise is as large as a
change to the log path. Here one process runs just the path: a follower (`Followers._follow`,
the loop reader of logloop.py) on a socket fed in the engine's wire format (chunked,
multiplexed, RFC 3339 stamps) by a child process printing RATE typical lines a second in
bursts every 0.1 s, the buffer, and the sender posting to an aiohttp server in another child.
It prints this process's CPU a second and per 1,000 lines, its wake-ups, and the CPU (wall
time between the loop's polls, so on a quiet machine) of each callback the loop ran: the
follower's tick and the sender's flush. Point PYTHONPATH at another checkout to compare two
versions side by side (run both at once: they see the same load).
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from agent.cloudlogs import followers as followers_module
from agent.cloudlogs.buffer import LogBuffer
from agent.cloudlogs.ratelimit import RateLimiter
from agent.cloudlogs.sender import Sender
from agent.engine.logloop import loop_frames

PACE = 1.0


def engine(sock: socket.socket, rate: int) -> None:
    """The engine's side: one HTTP chunk a line, a multiplexed frame in it."""
    i, burst = 0, max(1, rate // 10)
    while True:
        out = bytearray()
        for _ in range(burst):
            i += 1
            ns = time.time_ns()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9))
            text = (
                f"{stamp}.{ns % 10**9:09d}Z INFO [worker-{i % 4}] GET /api/v1/items/"
                f"{i * 7919 % 100000}?user={i % 977} -> 200 in {i % 97} ms (req {i})\n"
            ).encode()
            frame = struct.pack(">BxxxL", 1, len(text)) + text
            out += f"{len(frame):x}\r\n".encode() + frame + b"\r\n"
        sock.sendall(out)
        time.sleep(0.1)


def cloud(port: int) -> None:
    from aiohttp import web

    async def take(request: web.Request) -> web.Response:
        async for _ in request.content.iter_any():
            pass
        return web.Response(status=201)

    app = web.Application()
    app.router.add_post("/device/v2/{uuid}/log-stream", take)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


class _Response:  # what loop_frames reads: response.raw._fp.fp, response.raw.chunked
    def __init__(self, fp: Any) -> None:
        self.raw = type("Raw", (), {"_fp": type("Fp", (), {"fp": fp})(), "chunked": True})()

    def close(self) -> None:
        pass


def _voluntary_switches() -> int:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("voluntary_ctxt_switches:"):
            return int(row.split()[1])
    return 0


async def main(rate: int, seconds: float) -> None:
    ours, theirs = socket.socketpair()
    children = []
    if (pid := os.fork()) == 0:
        ours.close()
        engine(theirs, rate)
        os._exit(0)
    children.append(pid)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if (pid := os.fork()) == 0:
        cloud(port)
        os._exit(0)
    children.append(pid)
    theirs.close()
    await asyncio.sleep(1.5)
    buffer = LogBuffer(256 * 1024, 0, None)
    sender = Sender(f"http://127.0.0.1:{port}", "u", "k", buffer, lambda _b: None, PACE)
    fp = ours.makefile("rb")

    async def frames(*_args: Any, **_kwargs: Any) -> Any:
        async for batch in loop_frames(_Response(fp), ours, False, PACE):
            yield batch

    followers_module.log_frames = frames
    limiter = RateLimiter(1e6, 1e6)
    follow = followers_module.Followers(None, buffer, limiter, {}, 0, pace=PACE)  # type: ignore[arg-type]
    c = SimpleNamespace(id="c1", service_name="main", service_id=1)  # what _follow reads
    shipped = [0]
    put_all = buffer.put_all

    def counted(entries: list[Any]) -> None:
        shipped[0] += len(entries)
        put_all(entries)

    buffer.put_all = counted  # type: ignore[method-assign]
    tasks = [
        asyncio.create_task(sender.run()),
        asyncio.create_task(follow._follow(c, None)),  # type: ignore[arg-type]
    ]
    await asyncio.sleep(3)
    by_callback: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    run = asyncio.events.Handle._run

    def timed(handle: asyncio.Handle) -> None:
        t0 = time.perf_counter()
        run(handle)
        callback = getattr(handle, "_callback", None)
        owner = getattr(callback, "__self__", None)
        coro = owner.get_coro() if isinstance(owner, asyncio.Task) else None
        name = str(getattr(coro, "__qualname__", None) or getattr(callback, "__qualname__", "?"))
        row = by_callback[name]
        row[0] += time.perf_counter() - t0
        row[1] += 1

    lines0, cpu0, wall0, woken0 = (
        shipped[0],
        time.process_time(),
        time.monotonic(),
        _voluntary_switches(),
    )
    asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]
    await asyncio.sleep(seconds)
    asyncio.events.Handle._run = run  # type: ignore[method-assign]
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    lines, woken = shipped[0] - lines0, _voluntary_switches() - woken0
    print(
        f"{rate} lines/s for {wall:.0f} s: {lines / wall:.1f} lines/s,"
        f" CPU {cpu / wall * 1e3:.3f} ms/s"
        f" = {cpu * 1e6 / max(lines, 1):.1f} ms per 1,000 lines, {woken / wall:.2f} wake-ups/s,"
        f" {sender.stats.requests} requests; load {os.getloadavg()[0]:.2f}"
    )
    for name, (spent, count) in sorted(by_callback.items(), key=lambda kv: -kv[1][0])[:6]:
        print(f"  {name}: {spent / count * 1e6:.0f} µs each, {count} calls")
    for task in tasks:
        task.cancel()
    for pid in children:
        os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(int(args[0]) if args else 50, float(args[1]) if len(args) > 1 else 30.0))
