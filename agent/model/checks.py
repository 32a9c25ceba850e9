"""Small readers of target values: each returns the value typed, or raises
`TargetStateError` naming where it was found."""

from __future__ import annotations

from typing import Any

from agent.errors import TargetStateError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_int(value: Any) -> bool:
    return _is_int(value) and value > 0


def _scalar_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise TargetStateError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    return None if value is None else _str(value, where)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise TargetStateError(f"{where}: expected true or false")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise TargetStateError(f"{where}: expected a list")
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _strs(value: Any, where: str) -> tuple[str, ...]:
    return tuple(_str(v, where) for v in _list(value, where))


def _str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TargetStateError(f"{where}: expected an object of strings")
    out = {}
    for key, val in value.items():
        if val is None or isinstance(val, dict | list):
            raise TargetStateError(f"{where}: {key} must be a string")
        out[str(key)] = _scalar_str(val)
    return out
