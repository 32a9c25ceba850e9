import random

from agent.retry import Backoff, poll_jitter


def test_backoff_grows_caps_and_honors_retry_after():
    b = Backoff(base_s=15, cap_s=60)
    rng = random.Random(1)
    delays = [b.delay(n, rng=rng) for n in range(1, 8)]
    assert 7.5 <= delays[0] <= 15
    assert all(d <= 60 for d in delays)
    assert delays[-1] >= 30
    assert b.delay(1, retry_after=120, rng=rng) == 120


def test_jitter_bounds():
    rng = random.Random(2)
    assert all(0 <= poll_jitter(900, rng) <= 60 for _ in range(100))
    assert all(0 <= poll_jitter(10, rng) <= 1 for _ in range(100))
