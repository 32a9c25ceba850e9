"""The agent's own lines — the dashboard's system messages (agent/cloudlogs/system.py) and the
`/v2/local/logs` ones (agent/api/syslines.py) — from what the real apply loop and probation
watch publish on the bus during an update: a held lock, the downloads, the kills and installs,
a given-up download, a rollback."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.api import syslines
from agent.cloudlogs import system
from agent.model import UpdateStatus
from agent.reconcile import rollback
from tests.fakeengine.test_rollback import doc, good_r1, rolled_back
from tests.fakes.releases import R2, WEB2, on_r1
from tests.fakes.rig import Rig

# the /v2/local/logs lines as they were made from the log events: "<what>: key=value ...",
# every field of the event in order (the events' stable names and fields are the contract)
FROM_LOG_EVENTS = {
    "update_status_changed": "update status",
    "pull_started": "downloading image",
    "pull_done": "downloaded image",
    "pull_failed": "download failed",
    "step_started": "",
    "step_failed": "failed",
}


def from_log_event(event: Mapping[str, object]) -> str | None:
    what = FROM_LOG_EVENTS.get(str(event["event"]))
    if what is None:
        return None
    details = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "log_level"))
    return f"{what}: {details}" if what else details


class Lines:
    """What the two sinks make of the rig's bus events, in order."""

    def __init__(self, rig: Rig) -> None:
        self.cloud: list[tuple[str, bool]] = []
        self.local: list[str] = []
        for kind in system.KINDS:
            rig.bus.subscribe(kind, self._cloud)
        for kind in syslines.KINDS:
            rig.bus.subscribe(kind, self._local)

    def _cloud(self, event: system.Payload) -> None:
        if (line := system.system_message(event)) is not None:
            self.cloud.append(line)

    def _local(self, event: system.Payload) -> None:
        if (line := syslines.local_line(event)) is not None:
            self.local.append(line)

    def texts(self) -> list[str]:
        return [text for text, _error in self.cloud]


async def test_an_update_held_by_a_lock_then_applied_tells_each_step(tmp_path: Path) -> None:
    with capture_logs() as logs:
        async with Rig(tmp_path) as rig:
            lines = Lines(rig)
            await on_r1(rig)
            web1 = next(c.image_id for c in rig.engine.by_id.values() if "web" in c.name)
            lock = rig.lock_dir / "1" / "web" / "updates.lock"
            lock.write_text("")
            rig.deploy(R2)
            held = (
                "Updates are locked, retrying when the lock is released. Reason: service 'web'"
                f" holds the update lock ({lock})"
            )
            await rig.until(lambda: held in lines.texts(), "the lock's line")
            assert not [t for t in lines.texts() if t.startswith("Killing")]
            lock.unlink()
            await rig.converged()
    texts = lines.texts()
    expected = [
        "Installing service 'web'",  # r1
        "Update of 'app1' to release r1 done",
        held,
        f"Downloading image '{WEB2}'",
        f"Downloaded image '{WEB2}'",
        f"Killing service 'web {web1}'",  # "<service> <image id>", as the reference
        f"Killed service 'web {web1}'",
        "Installing service 'web'",
        "Installed service 'web'",
        "Update of 'app1' to release r2 done",
        "Deleting image 'reg.test/web:1'",
    ]
    said = iter(texts)
    assert all(line in said for line in expected), texts  # each said, in this order
    assert not any(error for _text, error in lines.cloud)
    # the local lines read as they did when made from the log events
    made_from_logs = [line for e in logs if (line := from_log_event(e)) is not None]
    assert lines.local == made_from_logs
    assert len(made_from_logs) > 10


async def test_a_download_given_up_says_each_failure_and_the_abort(tmp_path: Path) -> None:
    with capture_logs() as logs:
        async with Rig(tmp_path, max_pull_attempts=2) as rig:
            lines = Lines(rig)
            await on_r1(rig)
            rig.engine.fail_pull("reg.test/web:2", "manifest for reg.test/web:2 not found")
            rig.deploy(R2)
            await rig.until(lambda: rig.status("a1") is UpdateStatus.ABORTED, "aborted")
    error = f"{WEB2}: manifest for reg.test/web:2 not found"
    failed = (f"Failed to download image '{WEB2}' due to '{error}'", True)
    assert lines.cloud.count(failed) == 2
    aborted = [line for line in lines.cloud if " aborted: " in line[0]]
    assert aborted == [
        (
            f"Update of 'app1' to release r2 aborted: gave up after 2 failed pulls: {error}",
            True,
        )
    ]
    assert f"download failed: image={WEB2} error={error}" in lines.local
    # the abort's reason too, as the log event reads
    assert lines.local == [line for e in logs if (line := from_log_event(e)) is not None]
    assert " status=aborted " in lines.local[-1]
    assert lines.local[-1].endswith(f" reason=gave up after 2 failed pulls: {error}")


async def test_a_release_rolled_back_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollback, "TICK_S", 0.01)
    async with Rig(tmp_path, rollback=True) as rig:
        lines = Lines(rig)
        await good_r1(rig)
        rig.accept(doc("r2", 2, probation_s="5"))
        await rig.until(lambda: "web_2_2_r2" in [c.name for c in rig.engine.by_id.values()])
        await rig.until(lambda: rig.engine.running().get("web") == "r2", "r2 running")
        rig.engine.crash("web_2_2_r2", exit_code=1)
        await rolled_back(rig)
    assert (
        "Update of 'demo' to release r2 aborted: rolled back: web exited (exit 1)",
        True,
    ) in lines.cloud
