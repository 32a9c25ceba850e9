"""redsocks.conf and no_proxy as balenaOS reads them, and the reference's merge rules."""

from agent.hostconfig.proxy import ProxyFiles, parse_conf, stringify_conf

BALENA_CONF = """base {
\tlog_debug = off;
\tlog_info = on;
\tlog = stderr;
\tdaemon = off;
\tredirector = iptables;
}

redsocks {
\tip = example.org;
\tport = 1080;
\ttype = socks5;
\tlogin = "foo";
\tpassword = "bar";
\tlocal_ip = 127.0.0.1;
\tlocal_port = 12345;
}

dnsu2t {
\tremote_ip = 1.2.3.4;
\tremote_port = 54;
\tlocal_ip = 127.0.0.1;
\tlocal_port = 53;
}
"""
PROXY = {
    "ip": "example.org",
    "port": 1080,
    "type": "socks5",
    "login": "foo",
    "password": "bar",
    "dns": "1.2.3.4:54",
}


def test_a_balenaos_file_reads_as_the_reference_shows_it():
    assert parse_conf(BALENA_CONF) == PROXY


def test_written_files_read_back_and_look_like_balenaos_ones():
    text = stringify_conf(PROXY)
    assert parse_conf(text) == PROXY
    assert '\tlogin = "foo";' in text and "\tlocal_port = 12345;" in text
    assert "dnsu2t {\n\tremote_ip = 1.2.3.4;\n\tremote_port = 54;" in text


def test_dns_true_is_the_default_resolver_and_false_none():
    with_dns = stringify_conf({"type": "socks5", "ip": "p", "port": 1, "dns": True})
    assert "remote_ip = 8.8.8.8;" in with_dns and "remote_port = 53;" in with_dns
    assert "dnsu2t" not in stringify_conf({"type": "socks5", "ip": "p", "port": 1, "dns": False})
    assert stringify_conf({"dns": True}) == "" and stringify_conf({}) == ""


def test_invalid_or_empty_blocks_read_as_no_proxy():
    assert parse_conf("") == {}
    assert parse_conf("redsocks {\n}\n") == {}
    assert parse_conf("redsocks {\n\ttype = socks6;\n\tip = a;\n\tport = 1;\n}\n") == {}
    assert parse_conf("redsocks {\n\ttype = socks5;\n\tip = a;\n\tport = bar;\n}\n") == {}


def test_patches_merge_and_remove_as_the_reference_does(tmp_path):
    files = ProxyFiles(tmp_path)
    assert files.read() is None
    files.patch({"type": "socks5", "ip": "a", "port": 1080}, ("10.0.0.0/8",))
    assert files.read() == {"type": "socks5", "ip": "a", "port": 1080, "noProxy": ["10.0.0.0/8"]}
    assert (tmp_path / "system-proxy" / "no_proxy").read_text() == "10.0.0.0/8"
    # a partial patch merges into what is there
    files.patch({"ip": "b", "login": "u"}, None)
    assert files.read() == {
        "type": "socks5",
        "ip": "b",
        "port": 1080,
        "login": "u",
        "noProxy": ["10.0.0.0/8"],
    }
    # a noProxy-only patch that changes the list keeps redsocks.conf
    files.patch({}, ("1.1.1.1", "2.2.2.2"))
    patched = files.read()
    assert patched is not None
    assert patched["noProxy"] == ["1.1.1.1", "2.2.2.2"] and patched["ip"] == "b"
    # an empty list removes no_proxy (and, having changed it, keeps redsocks.conf)
    files.patch({}, ())
    assert not (tmp_path / "system-proxy" / "no_proxy").exists()
    assert files.read() == {"type": "socks5", "ip": "b", "port": 1080, "login": "u"}
    # an empty proxy removes redsocks.conf
    files.patch({}, None)
    assert files.read() is None
