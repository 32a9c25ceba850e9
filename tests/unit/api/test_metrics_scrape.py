"""The first scrape of /metrics loads prometheus_client (≈ 1 MB of imports) in a worker
thread, never on the event loop (CI's loop monitor saw a 127 ms block there)."""

import subprocess
import sys

CODE = """
import asyncio, importlib.abc, sys, threading
seen = {}
class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.startswith("prometheus_client"):
            seen.setdefault(threading.current_thread().name, set()).add(name)
        return None
sys.meta_path.insert(0, Spy())
from agent.api.metrics import AgentMetrics
from agent.events.bus import Bus
from tests.unit.api.metrics_fakes import fake_agent
m = AgentMetrics(fake_agent(), Bus())
text = asyncio.run(m.scrape()).decode()
again = asyncio.run(m.scrape()).decode()
print(sorted(seen).count("MainThread"), len(seen) > 0, "device_agent_polls_total 7.0" in again)
"""


def test_the_first_scrape_imports_prometheus_client_off_the_loop():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "True", "True"], out.stdout + out.stderr
