"""The agent's one notification mechanism: typed events (`kinds`) on an in-process bus (`bus`).

A component that has news publishes a frozen payload; whoever cares subscribes to its type.
Log event names are for people and tests reading the log, never an API between modules."""
