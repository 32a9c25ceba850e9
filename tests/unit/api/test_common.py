from typing import Any

import pytest

from agent.api.common import ApiError, app_id_of, flag, optional_int, optional_str


@pytest.mark.parametrize("value", [True, 1, "1", "true", "TRUE", "on", "yes"])
def test_true_flags(value):
    assert flag({"force": value}, "force") is True


@pytest.mark.parametrize("value", [False, 0, None, "0", "false", "off", "no", ""])
def test_false_flags(value):
    assert flag({"force": value}, "force") is False
    assert flag({}, "force") is False


@pytest.mark.parametrize("value", ["maybe", 2, 1.0, [], {}, -1])
def test_bad_flags_are_400(value):
    with pytest.raises(ApiError) as info:
        flag({"force": value}, "force")
    assert info.value.status == 400 and "'force' must be true or false" in info.value.message


def test_app_ids():
    assert app_id_of("12") == 12 and app_id_of(7) == 7
    for bad in ("0", "-1", "x", True, 0, "99999999999", 1.5, [1]):
        with pytest.raises(ApiError) as info:
            app_id_of(bad)
        assert info.value.status == 400 and "Invalid app id" in info.value.message
    with pytest.raises(ApiError, match="Missing app id"):
        app_id_of(None)


def test_optional_fields():
    assert optional_str({"a": "x"}, "a") == "x" and optional_str({"a": ""}, "a") is None
    assert optional_int({"a": "3"}, "a") == 3 and optional_int({}, "a") is None
    bad: dict[str, Any]
    for bad in ({"a": 1}, {"a": []}):
        with pytest.raises(ApiError):
            optional_str(bad, "a")
    for bad in ({"a": -1}, {"a": "x"}, {"a": True}, {"a": 2**40}):
        with pytest.raises(ApiError):
            optional_int(bad, "a")
