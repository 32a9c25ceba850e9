"""The test bed's runtime wrapper (testbed/capdrop_runtime.py): which capabilities it drops
from an OCI spec, and that it hands runc the same arguments."""

import json

import pytest

from testbed import capdrop_runtime as wrapper

STATUS = "Name:\tx\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\n"  # no SYS_RESOURCE


def test_missing_capabilities_from_the_bounding_set():
    assert wrapper.bounding_set(STATUS) == 0x1FFFEFFFFFF
    assert wrapper.missing_capabilities(0x1FFFEFFFFFF) == {"CAP_SYS_RESOURCE"}
    assert wrapper.missing_capabilities((1 << 41) - 1) == frozenset()
    with pytest.raises(ValueError):
        wrapper.bounding_set("Name:\tx\n")


def _process(*names: str) -> dict:
    sets = ("bounding", "effective", "permitted", "inheritable")
    return {"args": ["sh"], "capabilities": {kind: list(names) for kind in sets}}


def test_strip_removes_only_the_missing_ones_from_every_set():
    process = _process("CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN")
    assert wrapper.strip_capabilities(process, frozenset({"CAP_SYS_RESOURCE"}))
    assert all(v == ["CAP_CHOWN", "CAP_SYS_ADMIN"] for v in process["capabilities"].values())
    assert not wrapper.strip_capabilities(process, frozenset({"CAP_SYS_RESOURCE"}))
    assert not wrapper.strip_capabilities({"args": ["sh"]}, frozenset({"CAP_SYS_RESOURCE"}))


def _run(monkeypatch, argv):
    calls = []
    monkeypatch.setattr(wrapper, "bounding_set", lambda _status: 0x1FFFEFFFFFF)
    monkeypatch.setattr(wrapper.os, "execv", lambda path, args: calls.append((path, args)))
    wrapper.main(argv)
    return calls


def test_create_edits_the_bundle_and_execs_runc_with_the_same_argv(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(
        json.dumps({"ociVersion": "1.0.2", "process": _process("CAP_KILL", "CAP_SYS_RESOURCE")})
    )
    args = ["--root", "/r", "create", "--bundle", str(tmp_path), "--pid-file", "p", "ctr"]
    calls = _run(monkeypatch, ["/usr/sbin/runc", *args])
    assert calls == [("/usr/sbin/runc", ["/usr/sbin/runc", *args])]
    spec = json.loads((tmp_path / "config.json").read_text())
    assert spec["ociVersion"] == "1.0.2"
    assert spec["process"]["capabilities"]["bounding"] == ["CAP_KILL"]


def test_exec_edits_the_process_file(tmp_path, monkeypatch):
    process_file = tmp_path / "process.json"
    process_file.write_text(json.dumps(_process("CAP_SYS_RESOURCE")))
    _run(monkeypatch, ["runc", "exec", "--process", str(process_file), "--detach", "ctr"])
    assert json.loads(process_file.read_text())["capabilities"]["effective"] == []


def test_other_commands_pass_through(monkeypatch):
    assert _run(monkeypatch, ["runc", "--root", "/r", "kill", "ctr", "9"]) == [
        ("runc", ["runc", "--root", "/r", "kill", "ctr", "9"])
    ]
