"""The instant-update trigger (POST /v1/update): what each request does to the apply loop, the
poller and the rollback decisions, in order."""

from agent.reconcile.trigger import UpdateTrigger


class Calls:
    def __init__(self) -> None:
        self.log: list[str] = []

    def cancel_apply(self) -> bool:
        self.log.append("cancel")
        return True

    def request_apply(self, force: bool) -> None:
        self.log.append(f"apply force={force}")

    def force(self) -> None:
        self.log.append("forget rollbacks")

    def poll(self) -> None:
        self.log.append("poll")


def trigger(instant: bool) -> tuple[UpdateTrigger, Calls]:
    calls = Calls()
    return UpdateTrigger(calls, calls, calls.poll, lambda: instant), calls


def test_a_plain_request_polls_and_applies():
    updates, calls = trigger(instant=True)
    assert updates.request()
    assert calls.log == ["poll", "apply force=False"]


def test_with_instant_updates_off_only_a_forced_request_acts():
    updates, calls = trigger(instant=False)
    assert not updates.request(cancel=True)
    assert calls.log == []  # ignored whole: nothing cancelled either
    assert updates.request(force=True)
    assert calls.log == ["forget rollbacks", "poll", "apply force=True"]


def test_cancel_abandons_the_pass_in_flight_before_polling():
    updates, calls = trigger(instant=True)
    assert updates.request(cancel=True)
    assert calls.log == ["cancel", "poll", "apply force=False"]
