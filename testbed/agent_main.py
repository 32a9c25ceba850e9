"""TEST ONLY entry point: `python -m testbed.agent_main ARGS` is `python -m agent ARGS` with the
test scaffolding installed first, each part only when its variable asks for it:
- $DEVICE_AGENT_TEST_HOOKS=1: testbed/testhooks.py (crash and raise points, the SIGUSR2 loop
  blocker);
- $DEVICE_AGENT_TEST_RECORD_HOST=1: testbed/hoststandin.py (reboot, shutdown and the hostname
  recorded in `{dataDir}/host-actions.jsonl` instead of reaching the host).
AgentProcess starts the agent this way whenever one of them is on (the recorder is, by default).
"""

from __future__ import annotations

import os

from testbed import hoststandin, testhooks


def main() -> int:
    testhooks.install()
    hoststandin.install(os.environ)
    from agent.cli import main as agent_main

    return agent_main()


if __name__ == "__main__":
    raise SystemExit(main())
