"""The agent's own exception types. Library errors (docker, aiohttp, OSError) are translated
into these where they enter the agent, so the core never sees a third-party exception."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The device config (config.json) or a fleet config var is unusable."""


class TargetStateError(AgentError):
    """A target state document (or part of it) is malformed."""


class StoreError(AgentError):
    """Durable state could not be read or written (full disk, bad permissions...)."""


class CloudError(AgentError):
    """The cloud API could not be reached or answered with an error."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class EngineError(AgentError):
    """The container engine failed an operation."""


class EngineUnavailable(EngineError):
    """The engine's socket does not answer."""


class NotFound(EngineError):
    """The container, image, volume or network does not exist."""


class Conflict(EngineError):
    """The engine refused because the object is in use or already exists."""


class PullError(EngineError):
    """An image could not be pulled (registry down, unknown image, auth, disk)."""


class InsufficientSpace(PullError):
    """There is not enough disk for a pull: it was not started."""


class RegistryAuthRefused(PullError):
    """The registry refused the pull's credentials (or asked for some and none were sent)."""
