from agent.cloud.reporter import Reporter, ReportSources, apps_report
from agent.errors import CloudError
from agent.model import ServiceStatus
from agent.model import UpdateStatus as U
from agent.status.board import ServiceView, StatusBoard
from agent.store import Store


class FakeClient:
    uuid = "dev1"

    def __init__(self):
        self.sent = []
        self.fail = 0

    async def patch_state(self, body):
        if self.fail:
            self.fail -= 1
            raise CloudError("boom", status=503, retry_after=None)
        self.sent.append(body["dev1"])


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def make(tmp_path, metrics=None):
    store = Store(tmp_path)
    board = StatusBoard(store)
    client = FakeClient()
    clock = Clock()
    m = metrics if metrics is not None else {"cpu_usage": 10}
    reporter = Reporter(
        client,  # type: ignore[arg-type]  # a fake of the cloud client
        store,
        board,
        ReportSources(lambda: {"api_port": 48484}, lambda: dict(m), lambda: True),
        clock=clock,
    )
    return board, client, reporter, clock, m


async def test_every_transition_is_its_own_report_in_order(tmp_path):
    board, client, reporter, clock, _ = make(tmp_path)
    board.ensure_app("a", 1, "app", "r1")
    for status in (U.DOWNLOADING, U.DOWNLOADED, U.APPLYING_CHANGES, U.DONE):
        board.set_update_status("a", "r1", status)
    await reporter.tick()
    statuses = [
        r["apps"]["a"]["releases"]["r1"]["update_status"] for r in client.sent if "apps" in r
    ]
    assert statuses == ["downloading", "downloaded", "applying changes", "done"]
    assert client.sent[0]["api_port"] == 48484  # first report carries the device fields


async def test_nothing_changed_sends_nothing_even_after_restart(tmp_path):
    board, client, reporter, clock, _ = make(tmp_path)
    board.ensure_app("a", 1, "app", "r1")
    board.set_update_status("a", "r1", U.DONE)
    await reporter.tick()
    n = len(client.sent)
    clock.t += 1000
    await reporter.tick()
    assert len(client.sent) == n
    await board.flush()  # as the agent at shutdown: the status is on disk before a restart
    board2, client2, reporter2, _, _ = make(tmp_path)
    await reporter2.tick()
    assert client2.sent == []


async def test_progress_alone_is_throttled_to_10s(tmp_path):
    board, client, reporter, clock, _ = make(tmp_path)
    board.ensure_app("a", 1, "app", "r1")
    board.set_update_status("a", "r1", U.DOWNLOADING)
    board.set_services("a", {"main": ServiceView("img", ServiceStatus.DOWNLOADING, 0)})
    await reporter.tick()
    n = len(client.sent)
    board.set_download_progress("a", ("main",), 10)
    clock.t += 2
    wait = await reporter.tick()
    assert len(client.sent) == n and wait is not None and 7 < wait <= 10
    clock.t += 9
    await reporter.tick()
    assert len(client.sent) == n + 1
    assert (
        client.sent[-1]["apps"]["a"]["releases"]["r1"]["services"]["main"]["download_progress"]
        == 10
    )


async def test_metrics_alone_wait_five_minutes(tmp_path):
    board, client, reporter, clock, metrics = make(tmp_path)
    await reporter.tick()
    n = len(client.sent)
    metrics["cpu_usage"] = 50
    wait = await reporter.tick()
    assert len(client.sent) == n and wait is not None and wait > 250


async def test_failed_reports_are_merged_not_dropped(tmp_path):
    board, client, reporter, clock, _ = make(tmp_path)
    board.ensure_app("a", 1, "app", "r1")
    client.fail = 2
    board.set_update_status("a", "r1", U.DOWNLOADING)
    assert (await reporter.tick()) is not None  # backoff
    assert (await reporter.tick()) is not None
    board.set_update_status("a", "r1", U.DOWNLOADED)
    await reporter.tick()
    statuses = [
        r["apps"]["a"]["releases"]["r1"]["update_status"] for r in client.sent if "apps" in r
    ]
    assert statuses == ["downloading", "downloaded"]
    assert client.sent[0]["api_port"] == 48484


def test_apps_report_shape():
    from agent.status.board import AppView

    view = AppView(
        "a",
        1,
        "app",
        "r2",
        "r1",
        U.DOWNLOADING,
        0.0,
        services={"main": ServiceView("img", ServiceStatus.DOWNLOADING, 42)},
    )
    assert apps_report({"a": view}) == {
        "a": {
            "release_uuid": "r1",
            "releases": {
                "r2": {
                    "update_status": "downloading",
                    "update_lock": None,
                    "update_reason": None,
                    "services": {
                        "main": {"image": "img", "status": "Downloading", "download_progress": 42}
                    },
                }
            },
        }
    }


def test_lock_holder_is_reported_with_its_time():
    from agent.status.board import AppView

    view = AppView(
        "a", 1, "app", "r2", "r1", U.DOWNLOADED, 0.0, lock_service="main", lock_since=1795322925.0
    )
    release = apps_report({"a": view})["a"]["releases"]["r2"]
    assert release["update_lock"] == {"service": "main", "since": "2026-11-22T04:48:45+00:00"}
