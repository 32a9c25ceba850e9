"""Pull-stream progress: turn the engine's per-layer JSON events into one 0–100 figure.

Pure logic, fed event by event by the engine adapter. Layers that are already present count
as complete; a layer's size is known from its first `Downloading` event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.errors import PullError


class PullStreamError(PullError):
    """An error event in the pull's progress stream: the engine's words, untranslated (the
    engine adapter words it for the log and the app's status, agent/engine/docker.py)."""


_DONE_STATES = frozenset(
    {"Download complete", "Verifying Checksum", "Extracting", "Pull complete", "Already exists"}
)
_LAYER_STATES = _DONE_STATES | {"Pulling fs layer", "Waiting", "Downloading", "Retrying"}


@dataclass
class _Layer:
    total: int = 0
    current: int = 0
    done: bool = False


@dataclass
class PullProgress:
    layers: dict[str, _Layer] = field(default_factory=dict)
    bytes_downloaded: int = 0
    percent: int = 0

    def feed(self, event: dict[str, Any]) -> int | None:
        """Account for one event; return the new percentage when it changed."""
        if "error" in event or "errorDetail" in event:
            detail = event.get("errorDetail") or {}
            message = event.get("error") or detail.get("message") or "pull failed"
            raise PullStreamError(str(message))
        layer_id = event.get("id")
        status = str(event.get("status", ""))
        if not layer_id or status not in _LAYER_STATES:
            return None
        layer = self.layers.setdefault(layer_id, _Layer())
        if status == "Downloading":
            detail = event.get("progressDetail") or {}
            total = int(detail.get("total") or 0)
            current = int(detail.get("current") or 0)
            if total > 0:
                layer.total = total
            self.bytes_downloaded += max(0, current - layer.current)
            layer.current = current
        elif status in _DONE_STATES:
            if not layer.done:
                self.bytes_downloaded += max(0, layer.total - layer.current)
            layer.done = True
            layer.current = layer.total
        return self._recompute()

    def _recompute(self) -> int | None:
        known = [layer for layer in self.layers.values() if layer.total > 0 or layer.done]
        if not known:
            return None
        total = sum(layer.total for layer in known if layer.total > 0)
        if total == 0:
            new = 100 if all(layer.done for layer in known) else 0
        else:
            current = sum(layer.total if layer.done else layer.current for layer in known)
            new = min(100, current * 100 // total)
            if not all(layer.done for layer in self.layers.values()):
                new = min(new, 99)
        if new == self.percent:
            return None
        self.percent = new
        return new
