"""The shapes of the agent's state files, checked whenever the store loads one.

A file that parses as JSON but has the wrong shape (a list for an object, a string for a
number, an entry of the wrong type deep inside) can only come from outside interference or
an older/newer agent; it is set aside like a torn file and the agent starts from defaults,
instead of crashing on it at start-up. `STATE_SHAPES` names every state file's shape.

Objects are open: missing fields take their defaults in the code that reads them, unknown
fields are ignored (a newer agent may have written them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ShapeError(ValueError):
    """`path` (dotted, `$` for the whole document) is not what the shape wants."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


class Shape:
    expected = "anything"

    def check(self, value: Any, path: str = "$") -> None:
        """Raise ShapeError unless `value` has this shape."""

    def _fail(self, value: Any, path: str) -> ShapeError:
        return ShapeError(path, f"expected {self.expected}, got {_kind(value)}")


@dataclass(frozen=True)
class AnyValue(Shape):
    pass


@dataclass(frozen=True)
class Str(Shape):
    """A string; one that matches `pattern` (a regex, whole string) when given."""

    pattern: str | None = None
    expected = "a string"

    def check(self, value: Any, path: str = "$") -> None:
        if not isinstance(value, str):
            raise self._fail(value, path)
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ShapeError(path, f"expected a string matching {self.pattern}, got {value!r:.40}")


@dataclass(frozen=True)
class Int(Shape):
    expected = "an integer"

    def check(self, value: Any, path: str = "$") -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(value, path)


@dataclass(frozen=True)
class Num(Shape):
    """A finite number a float can hold (JSON allows 1e999 and 400-digit integers)."""

    expected = "a finite number"

    def check(self, value: Any, path: str = "$") -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(value, path)
        try:
            finite = math.isfinite(float(value))
        except OverflowError:
            finite = False
        if not finite:
            raise ShapeError(path, f"expected {self.expected}, got {value!r:.40}")


@dataclass(frozen=True)
class Opt(Shape):
    """`inner` or null."""

    inner: Shape

    def check(self, value: Any, path: str = "$") -> None:
        if value is not None:
            self.inner.check(value, path)


@dataclass(frozen=True)
class ListOf(Shape):
    item: Shape
    expected = "a list"

    def check(self, value: Any, path: str = "$") -> None:
        if not isinstance(value, list):
            raise self._fail(value, path)
        for i, item in enumerate(value):
            self.item.check(item, f"{path}[{i}]")


@dataclass(frozen=True)
class MapOf(Shape):
    """An object with any keys (matching `key`, a regex, when given) and `value` values."""

    value: Shape
    key: str | None = None
    expected = "an object"

    def check(self, value: Any, path: str = "$") -> None:
        if not isinstance(value, dict):
            raise self._fail(value, path)
        for k, v in value.items():
            if self.key is not None and not re.fullmatch(self.key, k):
                raise ShapeError(f"{path}.{k}", f"key does not match {self.key}")
            self.value.check(v, f"{path}.{k}")


@dataclass(frozen=True)
class Obj(Shape):
    """An object whose listed fields, when present, have their shapes."""

    fields: Mapping[str, Shape] = field(default_factory=dict)
    expected = "an object"

    def check(self, value: Any, path: str = "$") -> None:
        if not isinstance(value, dict):
            raise self._fail(value, path)
        for name, shape in self.fields.items():
            if name in value:
                shape.check(value[name], f"{path}.{name}")


API_KEY = r"[A-Za-z0-9_-]{16,128}"  # keys of the local API

_APP_STATUS = Obj(
    {
        "app_id": Int(),
        "name": Str(),
        "release_uuid": Opt(Str()),
        "current_release_uuid": Opt(Str()),
        "update_status": Opt(Str()),
        "since": Num(),
        "reason": Opt(Str()),
    }
)

_RELEASE_ENTRY = Obj({"release": Str(), "entry": Obj(), "since": Opt(Num())})

# store key -> shape of its file (`<data dir>/<key>.json`)
STATE_SHAPES: Mapping[str, Shape] = {
    # agent/api/keys.py: the local API's keys, global and per app id
    # a key the agent made (32 hex) or the reference did (the same); a short one is no key
    "api-keys": Obj(
        {
            "global": Opt(Str(API_KEY)),
            "apps": Opt(MapOf(Opt(Str(API_KEY)), key=r"[0-9]{1,12}")),
        }
    ),
    # agent/status/board.py: each app's update status, the last poll
    "status": Obj({"apps": Opt(MapOf(_APP_STATUS)), "last_poll": Opt(Num())}),
    # agent/reconcile/executor.py ManagedImages: ids of the images the agent pulled
    "images": ListOf(Str()),
    # agent/cloud/poller.py: the last target fetched and its ETag (the body is parsed and
    # judged as a target when loaded)
    "target": Obj({"etag": Opt(Str()), "body": Obj()}),
    # agent/cloud/reporter.py: what the cloud acknowledged, when metrics were last sent
    "report-cache": Obj({"acked": Opt(MapOf(AnyValue())), "metrics_at": Num()}),
    # agent/local/intake.py: the local-mode target document
    "local-target": Obj(),
    # agent/reconcile/rollback.py: per app the cloud's release and the one to go back to,
    # and the releases that failed probation (release uuid -> decision)
    "rollback": Obj(
        {
            "apps": Opt(MapOf(Obj({"current": _RELEASE_ENTRY, "previous": Opt(_RELEASE_ENTRY)}))),
            "failed": Opt(MapOf(Obj({"app": Str(), "reason": Str(), "to": Opt(Str())}))),
        }
    ),
    # agent/cloud/tags.py: device tags set through the API, acknowledged by the cloud, last
    # known from it
    "device-tags": Obj(
        {
            "target": Opt(MapOf(Str())),
            "reported": Opt(MapOf(Str())),
            "known": Opt(ListOf(Obj())),
        }
    ),
}


def problem(key: str, value: Any) -> str | None:
    """What is wrong with `value` as the content of state file `key` (None: nothing, or
    a key without a declared shape)."""
    shape = STATE_SHAPES.get(key)
    if shape is None:
        return None
    try:
        shape.check(value)
    except ShapeError as exc:
        return str(exc)
    return None
