"""Where a target came from: it decides which target the apply loop follows (agent/local/
intake.py) and whether a rolled-back release is substituted (agent/reconcile/rollback.py)."""

from __future__ import annotations

from enum import StrEnum


class TargetSource(StrEnum):
    CLOUD = "cloud"  # fetched by the poller
    PERSISTED = "persisted"  # read back from the store at start (a preloaded apps.json too)
    LOCAL = "local"  # POST /v2/local/target-state, or the one saved, in local mode
    ROLLBACK = "rollback"  # the last cloud target again, a failed release rolled back
