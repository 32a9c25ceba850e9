"""Every curl example of the reference supervisor's docs/API.md, run against a device with one
two-service app: each documented request, with the key the docs use, must get the documented
status and response (keys, and values where the docs fix them). The examples are the table
in api_docs_examples.json; a row that says `differs` is where the agent answers differently on
purpose (README, "Where the agent differs from the reference"), and what it checks instead.

The table also holds the reference's error answers for the same routes (phase `errors`, with
the reference's source for each). Rows run in phases so that the destructive ones don't spoil
the rest: reads, error answers, service actions, app restart/purge, key regeneration,
reboot/shutdown (recorded: testbed/hoststandin.py), and last the local-mode endpoints on the
same device restarted in local mode (the docs call those without a key, which only local mode
allows)."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from testbed.processes import AgentProcess
from tests.helpers import wait_until
from tests.integration.api_helpers import APP_ID, deploy, running

MIRROR = Path("/work/.mirror/balena-os+balena-supervisor/repo")  # the reference, where present
TABLE = json.loads(Path(__file__).with_name("api_docs_examples.json").read_text())
POWER = {"reboot", "shutdown"}
PHASES = ("read", "errors", "service", "app", "key", "host", "local")


def test_table_covers_every_curl_example_of_the_docs():
    """The table is the docs' examples: each `### METHOD /path` heading of docs/API.md that
    has a curl example 'from an app container' has a row (checked against the mirror when
    it is there; the headings are listed here so the test runs without it too)."""
    documented = {
        "GET /ping", "POST /v1/blink", "POST /v1/update", "POST /v1/reboot", "POST /v1/shutdown",
        "POST /v1/purge", "POST /v1/restart", "POST /v1/regenerate-api-key", "GET /v1/device",
        "POST /v1/apps/:appId/stop", "POST /v1/apps/:appId/start", "GET /v1/apps/:appId",
        "GET /v1/healthy", "PATCH /v1/device/host-config", "GET /v1/device/host-config",
        "GET /v2/applications/state", "GET /v2/applications/:appId/state", "GET /v2/state/status",
        "POST /v2/applications/:appId/restart-service",
        "POST /v2/applications/:appId/stop-service",
        "POST /v2/applications/:appId/start-service", "POST /v2/applications/:appId/restart",
        "POST /v2/applications/:appId/purge", "GET /v2/version", "GET /v2/containerId",
        "GET /v2/local/target-state", "POST /v2/local/target-state", "GET /v2/local/device-info",
        "GET /v2/local/logs", "GET /v2/device/name", "GET /v2/device/tags",
        "PATCH /v2/device/tags", "GET /v2/device/vpn", "GET /v2/cleanup-volumes",
        "POST /v2/journal-logs",
    }  # fmt: skip
    if MIRROR.is_dir():
        docs = subprocess.run(
            ["git", "-C", str(MIRROR), "show", "HEAD:docs/API.md"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        headings = set(re.findall(r"^### ((?:GET|POST|PATCH|PUT|DELETE) /\S+)", docs, re.M))
        # the local-mode and device-info sections are headed in words; their curl lines count
        headings |= {"GET /v2/local/device-info", "GET /v2/local/logs", "GET /v2/device/name"}
        headings |= {"GET /v2/device/tags", "PATCH /v2/device/tags", "GET /v2/device/vpn"}
        headings |= {"GET /v2/cleanup-volumes", "POST /v2/journal-logs"}
        assert headings == documented, (
            sorted(headings - documented),
            sorted(documented - headings),
        )
    covered = {row["doc"].split(" (")[0] for row in TABLE["rows"] if row["phase"] != "errors"}
    assert documented <= covered, sorted(documented - covered)
    assert all(row["phase"] in PHASES for row in TABLE["rows"])


def test_every_docs_example_answers_as_documented(device, images):
    device.cloud.tags(device.uuid, {"DeviceLocation": "warehouse #3"})
    deploy(device, images)
    agent = device.agent
    keys = {"app": agent.api_key(APP_ID), "device": agent.api_key(), "none": None}
    failures: list[str] = []

    for phase in PHASES:
        if phase == "local":
            _restart_in_local_mode(agent)
        for row in (r for r in TABLE["rows"] if r["phase"] == phase):
            answer = _call(agent, row, keys[row["key"]])
            problems = _check(row, answer)
            failures += [f"{row['doc']}: {p} (answer: {answer!r:.300})" for p in problems]
            if row.get("then") == "use the answer as the app key" and not problems:
                keys["app"] = answer["text"].strip()
        if phase == "service":  # every service runs again after the service actions
            wait_until(lambda: set(running(device)) == {"main", "aux"}, 30)
        if phase == "host":  # recorded (the host recorder) a moment after the answer
            wait_until(lambda: sorted(set(agent.host_actions()) & POWER) == sorted(POWER), 15)

    assert not failures, "\n".join(failures)
    # what the examples did, seen from outside the API
    wait_until(lambda: device.cloud.tags(device.uuid).get("foo") == "bar", 10)
    assert "hostname" in agent.host_actions()  # the host recorder: the hostname is recorded


def _restart_in_local_mode(agent: AgentProcess) -> None:
    agent.stop()
    agent.config["localMode"] = True
    agent.start()
    agent.wait_api()


def _substitute(value: Any) -> Any:
    if value == "$APP_ID":
        return APP_ID
    if value == "$DOCS_LOCAL_TARGET":
        return TABLE["docs_local_target"]
    if isinstance(value, str):
        return value.replace("{appId}", str(APP_ID))
    if isinstance(value, dict):
        return {k: _substitute(v) for k, v in value.items()}
    return value


def _call(agent: AgentProcess, row: dict[str, Any], key: str | None) -> dict[str, Any]:
    path, body = _substitute(row["path"]), _substitute(row.get("body"))
    if row.get("stream"):
        return _head_of_stream(agent, row["method"], path, body, key)
    answer = agent.api(row["method"], path, body, key=key, timeout=120)
    return {
        "status": answer.status,
        "text": answer.raw.decode(errors="replace"),
        "json": answer.body,
    }


def _head_of_stream(
    agent: AgentProcess, method: str, path: str, body: Any, key: str | None
) -> dict[str, Any]:
    """Status and first line of an endless answer (follow streams); the connection is closed."""
    request = urllib.request.Request(
        agent.api_url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            try:
                line = response.readline(65536)
            except TimeoutError:
                line = b""
            return {"status": response.status, "text": line.decode(errors="replace"), "json": None}
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        parsed = json.loads(raw) if raw.startswith(b"{") else None
        return {"status": exc.code, "text": raw.decode(errors="replace"), "json": parsed}


def _at(document: Any, dotted: str) -> Any:
    for part in [p for p in _substitute(dotted).split(".") if p]:
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


_NOTHING = object()  # _check's: no value at a dotted path


def _check(row: dict[str, Any], answer: dict[str, Any]) -> list[str]:
    if row.get("differs") and row["doc"] == "POST /v2/journal-logs" and answer["status"] == 501:
        body = answer["json"] or {}
        ok = body.get("status") == "failed" and "journal" in str(body.get("message", "")).lower()
        return [] if ok else ["501 without a message naming journald"]
    problems = []
    if answer["status"] != row["status"]:
        return [f"status {answer['status']}, documented {row['status']}"]
    if "text" in row and answer["text"] != row["text"]:
        problems.append(f"body {answer['text']!r:.80}, documented {row['text']!r}")
    if "text_re" in row and not re.fullmatch(row["text_re"], answer["text"].strip()):
        problems.append(f"body {answer['text']!r:.80} is not {row['text_re']}")
    if "json" in row and answer["json"] != row["json"]:
        problems.append(f"body {answer['json']!r:.200}, documented {row['json']!r}")

    def at(dotted: str) -> Any:
        try:
            return _at(answer["json"], dotted)
        except (KeyError, IndexError, TypeError, ValueError):
            problems.append(f"nothing at {dotted!r}")
            return _NOTHING

    for dotted, names in row.get("has", {}).items():
        found = at(dotted)
        missing = [n for n in names if not isinstance(found, dict) or n not in found]
        if found is not _NOTHING and missing:
            problems.append(f"{dotted or 'the body'} lacks {missing}")
    for dotted, value in row.get("values", {}).items():
        found = at(dotted)
        if found is not _NOTHING and found != _substitute(value):
            problems.append(f"{dotted} = {found!r}, documented {value!r}")
    if "first_line_has" in row:
        try:
            first = json.loads(answer["text"])
        except ValueError:
            first = None
        if not isinstance(first, dict) or not set(row["first_line_has"]) <= first.keys():
            problems.append(f"first line {answer['text']!r:.120} lacks {row['first_line_has']}")
    return problems
