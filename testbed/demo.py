"""The demo: a private engine, a registry, the devcloud and the agent, deploying two releases.

    scripts/demo            # live view, then waits for Ctrl-C
    scripts/demo --once     # runs the two deployments and exits (used by the tests)

Everything it starts lives under one temp dir and is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

from testbed import PrivateEngine, Registry, ThrottledProxy, image_ref_via, publish
from testbed.processes import AgentProcess, DevCloudProcess
from testbed.targets import app, device_target, service

MIB = 1024 * 1024
APP_UUID = "d3m0a99c0ffee0000000000000000001"
APP_ID = 1001


class Stop(Exception):
    pass


def _bar(percent: int | None, width: int = 24) -> str:
    if percent is None:
        return ""
    filled = width * percent // 100
    return f"[{'#' * filled}{'.' * (width - filled)}] {percent:3d}%"


class LiveView:
    """Renders what the agent is doing from its structured log and what the cloud sees."""

    def __init__(self, agent: AgentProcess, tty: bool) -> None:
        self.agent = agent
        self.tty = tty
        self._seen = 0
        self.progress: dict[str, int] = {}
        self.transitions: list[tuple[float, str, str]] = []
        self._last_frame = ""

    def consume(self) -> list[dict[str, Any]]:
        events = self.agent.events()
        new, self._seen = events[self._seen :], len(events)
        for event in new:
            name = event.get("event")
            if name == "download_progress":
                for svc in event.get("services", []):
                    self.progress[svc] = int(event["percent"])
            elif name == "update_status_changed":
                self.transitions.append((float(event["since"]), event["release"], event["status"]))
                if event["status"] != "downloading":
                    self.progress.clear()
        return new

    def render(self, title: str, cloud: dict[str, Any], containers: list[Any]) -> None:
        status = cloud.get("apps_update_status", {}).get(APP_UUID) or {}
        lines = [
            f"device-agent demo — {title}",
            "",
            f"  cloud sees: release {status.get('release_uuid', '-')}  "
            f"update status: {status.get('status', '-')}",
            "",
            "  services on the engine:",
        ]
        for c in sorted(containers, key=lambda c: c.name):
            name = c.labels.get("io.balena.service-name", "?")
            lines.append(f"    {name:8} {c.status:9} {c.name}")
        if self.progress:
            lines.append("")
            lines.append("  downloading:")
            for svc, pct in sorted(self.progress.items()):
                lines.append(f"    {svc:8} {_bar(pct)}")
        lines.append("")
        lines.append("  update status transitions (agent):")
        for at, release, st in self.transitions[-8:]:
            lines.append(f"    {time.strftime('%H:%M:%S', time.localtime(at))}  {release}  {st}")
        frame = "\n".join(lines)
        if frame == self._last_frame:
            return
        self._last_frame = frame
        if self.tty:
            sys.stdout.write("\x1b[2J\x1b[H" + frame + "\n")
        else:
            print(frame + "\n", flush=True)


def _release(images: dict[str, str], release: str, release_id: int, web: str) -> dict[str, Any]:
    services = {
        "web": service(
            web,
            service_id=1,
            image_id=release_id * 10 + 1,
            volumes=["data:/data"],
            environment={"RELEASE": release},
        ),
        "worker": service(images["worker"], service_id=2, image_id=2),
    }
    return device_target(
        {
            APP_UUID: app(
                app_id=APP_ID,
                name="demo-app",
                release_uuid=release,
                release_id=release_id,
                services=services,
                volumes={"data": {}},
            )
        },
        name="demo-device",
        config={"BALENA_SUPERVISOR_POLL_INTERVAL": "2000"},
    )


def run(once: bool, keep: bool) -> int:
    tty = sys.stdout.isatty() and not once
    root = Path(tempfile.mkdtemp(prefix="da-demo-", dir="/tmp"))
    engine = PrivateEngine(root / "e")
    registry = Registry(root / "r")
    proxy: ThrottledProxy | None = None
    cloud_proc = DevCloudProcess(root / "c")
    agent: AgentProcess | None = None

    def on_signal(signum: int, frame: Any) -> None:
        raise Stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"demo: starting a private Docker engine, a registry and the devcloud in {root}")
        engine.start()
        registry.start()
        proxy = ThrottledProxy(registry).start()
        proxy.set_rate(3 * MIB)  # slow enough to watch the progress bar
        cloud_proc.start()
        docker = engine.client()
        print("demo: building sample images from busybox and pushing them to the registry")
        images: dict[str, str] = {}
        for key, repo, tag, payload in (
            ("web_v1", "demo/web", "v1", 2),
            ("web_v2", "demo/web", "v2", 12),
            ("worker", "demo/worker", "v1", 1),
        ):
            published = publish(
                docker, registry, repo, tag, marker=f"{repo}:{tag}", payload_mb=payload
            )
            images[key] = image_ref_via(published.ref_by_digest, proxy.address)
        device_uuid, key = uuidlib.uuid4().hex, uuidlib.uuid4().hex
        cloud = cloud_proc.client()
        cloud.register(device_uuid, key, name="demo-device")
        agent = AgentProcess(
            root / "device",
            uuid=device_uuid,
            api_key=key,
            api_endpoint=cloud_proc.url,
            docker_host=engine.host,
            poll_interval_ms=2000,
        )
        view = LiveView(agent, tty)

        def deploy(release: str, release_id: int, web: str, title: str) -> None:
            cloud.set_target(device_uuid, _release(images, release, release_id, web))
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                view.consume()
                state = cloud.device(device_uuid)
                view.render(title, state, _supervised(docker))
                status = state.get("apps_update_status", {}).get(APP_UUID) or {}
                if status == {} or status.get("release_uuid") != release:
                    pass
                elif status.get("status") == "done":
                    return
                if agent is not None and not agent.running:
                    raise RuntimeError(f"the agent exited; log:\n{agent.log_tail()}")
                time.sleep(0.3)
            raise RuntimeError(f"release {release} not done within 300 s")

        agent.start()
        deploy("release-1", 1, images["web_v1"], "first deployment (2 services)")
        time.sleep(1 if once else 3)
        deploy("release-2", 2, images["web_v2"], "update: web v2 (12 MiB download)")
        history = cloud.device(device_uuid)["update_status_history"]
        print("\ndemo: the cloud recorded these update status changes:")
        for h in history:
            print(
                f"  {time.strftime('%H:%M:%S', time.localtime(h['t']))}"
                f"  {h['release_uuid']:10} {h['status']}"
            )
        print("demo: both releases done.")
        if not once:
            print(f"demo: agent log: {agent.log_path} — press Ctrl-C to stop everything")
            while True:
                time.sleep(1)
        return 0
    except Stop:
        print("\ndemo: stopping")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if agent is not None:
            agent.stop()
        cloud_proc.stop()
        if proxy is not None:
            proxy.stop()
        registry.purge()
        engine.purge()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        print("demo: everything it started is stopped")


def _supervised(docker: Any) -> list[Any]:
    """The agent's containers; the agent removes them as it updates, so one can go between
    the engine's list and the SDK's inspect of it: then list again."""
    import docker as docker_sdk

    for _ in range(5):
        try:
            return list(docker.containers.list(all=True, filters={"label": "io.balena.supervised"}))
        except docker_sdk.errors.NotFound:
            continue
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo")
    parser.add_argument("--once", action="store_true", help="exit after the two deployments")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    return run(args.once, args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
