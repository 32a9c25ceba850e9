"""TEST ONLY entry point: `python -m testbed.agent_main ARGS` is `python -m agent ARGS` with the
test hooks of testbed/testhooks.py installed first (crash and raise points, the SIGUSR2 loop
blocker). AgentProcess starts the agent this way when $DEVICE_AGENT_TEST_HOOKS=1 is asked for."""

from __future__ import annotations

from testbed import testhooks


def main() -> int:
    testhooks.install()
    from agent.cli import main as agent_main

    return agent_main()


if __name__ == "__main__":
    raise SystemExit(main())
