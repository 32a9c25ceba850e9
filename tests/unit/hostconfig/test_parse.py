"""PATCH /v1/device/host-config bodies: what the reference accepts (strictly or as its lenient
"legacy" shape) is accepted, what it refuses is a 400-worthy error."""

import pytest

from agent.hostconfig.parse import PREFIX, HostConfigInvalid, parse


def test_full_body():
    patch = parse(
        {
            "network": {
                "hostname": "box",
                "proxy": {
                    "type": "socks5",
                    "ip": "example.org",
                    "port": 1080,
                    "login": "foo",
                    "password": "bar",
                    "dns": "1.2.3.4:54",
                    "noProxy": ["152.10.30.4", "253.1.1.0/16"],
                },
            }
        }
    )
    assert patch.hostname == "box"
    assert patch.proxy == {
        "type": "socks5",
        "ip": "example.org",
        "port": 1080,
        "login": "foo",
        "password": "bar",
        "dns": "1.2.3.4:54",
    }
    assert patch.no_proxy == ("152.10.30.4", "253.1.1.0/16")


def test_only_hostname_only_no_proxy_and_nothing():
    assert parse({"network": {"hostname": ""}}).hostname == ""
    only = parse({"network": {"proxy": {"noProxy": ["a"]}}})
    assert only.proxy == {} and only.no_proxy == ("a",)
    assert parse({"network": {}}).empty
    # other keys of network are dropped, as the reference's exact type does
    assert parse({"network": {"foo": "bar", "hostname": "x"}}).hostname == "x"


def test_the_lenient_shape_the_reference_has_always_accepted():
    patch = parse({"network": {"proxy": {"type": "socks6", "ip": 123, "port": "abc"}}})
    assert patch.proxy == {"type": "socks6", "ip": 123, "port": "abc"}
    # noProxy that is not a list clears the list, as the reference does
    assert parse({"network": {"proxy": {"noProxy": True}}}).no_proxy == ()
    # the fields the reference sets itself are dropped
    assert parse({"network": {"proxy": {"local_port": 1, "ip": "a"}}}).proxy == {"ip": "a"}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"hostname": "x"},
        {"network": 123},
        {"network": None},
        {"network": {"hostname": 123}},
        {"network": {"hostname": None}},
        {"network": {"proxy": "socks5://x"}},
        {"network": {"proxy": {"dns": "1.2.3.4"}}},
        {"network": {"proxy": {"dns": "1.2.3.4:abc"}}},
        {"network": {"proxy": {"dns": 123}}},
        {"network": {"proxy": {"dns": ":53"}}},
        [],
    ],
)
def test_refused_as_the_reference_refuses(body):
    with pytest.raises(HostConfigInvalid, match=PREFIX):
        parse(body)


@pytest.mark.parametrize(
    "proxy",
    [
        {"ip": "a;\nredirector = none"},
        {"login": 'x"y'},
        {"ip": {"nested": 1}},
        {"ip": 1.5},
        {"bad key": "x"},
        {"noProxy": ["a\nb"]},
    ],
)
def test_values_that_would_break_redsocks_conf_are_refused(proxy):
    with pytest.raises(HostConfigInvalid):
        parse({"network": {"proxy": proxy}})


@pytest.mark.parametrize("dns", [True, False, "8.8.8.8:53", "dns.example:5353"])
def test_valid_dns(dns):
    assert parse({"network": {"proxy": {"dns": dns}}}).proxy == {"dns": dns}
