"""Benchmarks of the agent (docs/benchmarks.md); run with `scripts/bench` (`python -m
testbed.bench`). Modules: `common` (readings, statistics), `planner` (pure planner time),
`apply` (apply overhead against the docker CLI), `device` (heartbeat, memory, idle CPU and
traffic, soak) and `__main__` (the command line)."""
