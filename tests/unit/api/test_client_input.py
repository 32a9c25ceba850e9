"""Whatever a client sends gets a 4xx with a JSON body, never a 500: Unicode digits in ids,
JSON nested past the parser's stack, key bytes that aren't UTF-8. A bug that does raise gets a
JSON 500, and its stack is logged once per kind, not once per request."""

import asyncio
import gzip
import json
import re
import socket
import time
import zlib

from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from agent.api import server
from agent.api.common import decimal
from tests.unit.api.fakes import ApiTestServer, build_app, fake_agent, serve


@given(st.text(max_size=20))
def test_decimal_takes_only_ascii_digits(text):
    number = decimal(text)
    if number is None:
        assert not (text and text.isascii() and text.isdigit() and len(text) <= 12)
    else:
        assert text.isascii() and text.isdigit() and number == int(text)


async def _json(answer):
    assert answer.content_type == "application/json"
    return await answer.json()


async def test_unicode_digits_in_an_app_id_are_a_bad_request(tmp_path):
    async def check(client, agent, _updates):
        key = {"Authorization": f"Bearer {agent.keys.global_key}"}
        for method, path, body in (
            ("GET", "/v1/apps/%C2%B2", None),  # '²'.isdigit() is true, int('²') raises
            ("GET", "/v2/applications/%D9%A3/state", None),  # Arabic-Indic three
            ("POST", "/v1/apps/%C2%B2/stop", None),
            ("POST", "/v1/restart", {"appId": "²"}),
            ("POST", "/v2/applications/5/restart-service", {"imageId": "²"}),
            ("POST", "/v2/journal-logs", {"count": "³"}),
        ):
            answer = await client.request(method, path, json=body, headers=key)
            assert answer.status == 400, path
            body = await _json(answer)
            assert body["status"] == "failed"
            assert "Invalid app id" in body["message"] or "integer" in body["message"]

    await serve(tmp_path, check)


async def test_json_nested_past_the_parsers_stack_is_a_bad_request(tmp_path):
    async def check(client, agent, updates):
        key = {
            "Authorization": f"Bearer {agent.keys.global_key}",
            "Content-Type": "application/json",
        }
        for method, path in (
            ("POST", "/v1/update"),
            ("POST", "/v1/restart"),
            ("POST", "/v2/journal-logs"),
            ("PATCH", "/v2/device/tags"),
        ):
            answer = await client.request(method, path, data=b"[" * 100_000, headers=key)
            assert answer.status == 400, path
            assert await _json(answer) == {
                "status": "failed",
                "message": "request body is not valid JSON: nested too deeply",
            }
        # also with an app key, where the table reads the body for its appId
        app_key = {**key, "Authorization": f"Bearer {agent.keys.app_keys[5]}"}
        answer = await client.post("/v1/restart", data=b"[" * 100_000, headers=app_key)
        assert answer.status == 400
        assert updates == []

    await serve(tmp_path, check)


def _raw_get(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


async def test_key_bytes_that_are_not_utf8_are_just_a_wrong_key(tmp_path):
    async def check(client, _agent, _updates):
        port = client.server.port
        with capture_logs() as logged:
            for request in (
                b"GET /v2/version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n",
                b"GET /v2/version HTTP/1.1\r\nHost: x\r\nAuthorization: ApiKey caf\xe9\r\n",
                b"GET /v2/version?apikey=%FF%FE HTTP/1.1\r\nHost: x\r\n",
                b"GET /v1/apps/1?apikey=%ED%A0%80 HTTP/1.1\r\nHost: x\r\n",
            ):
                raw = await asyncio.to_thread(
                    _raw_get, port, request + b"Connection: close\r\n\r\n"
                )
                head, _, body = raw.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 401 "), raw
                assert body == b'{"status":"failed","message":"Unauthorized: invalid API key"}'
        assert not [e for e in logged if e["event"] == "api_error"]

    await serve(tmp_path, check)


async def test_a_bug_is_a_json_500_logged_once_per_kind(tmp_path, monkeypatch):
    monkeypatch.setattr(server, "_SEEN_ERRORS", {})
    agent, _ = fake_agent(tmp_path)
    app = build_app(agent, tmp_path)

    async def broken(_request):
        raise KeyError("boom")

    app.router.add_get("/v2/broken", broken)  # a route with a bug (no table entry: any key)

    async with TestClient(ApiTestServer(app)) as client:
        key = {"Authorization": f"Bearer {agent.keys.global_key}"}
        with capture_logs() as logged:
            for _ in range(5):
                answer = await client.get("/v2/broken", headers=key)
                assert answer.status == 500
                body = await _json(answer)
                assert body["status"] == "failed" and "internal error" in body["message"]
        errors = [e for e in logged if e["event"] == "api_error"]
        assert len(errors) == 1 and errors[0]["error"] == "KeyError"
        assert server._SEEN_ERRORS == {("KeyError", "/v2/broken"): 5}


def _raw(port: int, head: bytes, body: bytes = b"", pause: float = 0.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        if pause:
            time.sleep(pause)  # the body arrives after the headers, in a packet of its own
        sock.sendall(body)
        out = b""
        while chunk := sock.recv(65536):  # until the answer is whole (or the server closes)
            out += chunk
            head, sep, rest = out.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if sep and length and len(rest) >= int(length.group(1)):
                break
        return out


async def test_compressed_bodies_are_refused_at_once(tmp_path):
    """aiohttp would inflate them on the loop, and a bad deflate body that arrives after its
    headers left the handler waiting forever; the API refuses them with a 415 instead."""

    async def check(client, agent, updates):
        key = agent.keys.global_key.encode()
        for encoding, body in (
            (b"deflate", b'{"appId": 5}'),  # not deflate at all
            (b"deflate", zlib.compress(b'{"force": true}')),
            (b"gzip", gzip.compress(b"[" * 100_000)),
            (b"br", b"{}"),  # no brotli module here: aiohttp's parser would refuse it itself
        ):
            head = (
                b"POST /v1/update HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key
                + b"\r\nContent-Type: application/json\r\nContent-Encoding: " + encoding
                + b"\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
            )  # fmt: skip
            started = time.monotonic()
            raw = await asyncio.to_thread(_raw, client.server.port, head, body, 0.2)
            assert time.monotonic() - started < 3
            status, _, rest = raw.partition(b"\r\n")
            assert status == b"HTTP/1.1 415 Unsupported Media Type", (encoding, raw)
            answer = json.loads(rest.partition(b"\r\n\r\n")[2])
            assert answer["status"] == "failed" and "compressed" in answer["message"]
        assert updates == []

    await serve(tmp_path, check)


async def test_requests_the_http_parser_refuses_are_logged_once_per_kind(tmp_path):
    async def check(client, _agent, _updates):
        with capture_logs() as logged:
            for i in range(5):
                raw = await asyncio.to_thread(
                    _raw,
                    client.server.port,
                    b"GET /ping HTTP/1.1\r\nHost: x\r\nAccept: \x01%d\r\n\r\n" % i,
                )
                assert raw.startswith(b"HTTP/1.0 400 ") or raw.startswith(b"HTTP/1.1 400 ")
        bad = [e for e in logged if e["event"] == "api_bad_http_request"]
        assert len(bad) == 1 and bad[0]["kind"] == "BadHttpMessage"

    await serve(tmp_path, check)
