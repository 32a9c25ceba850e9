"""schemathesis against the live API: every operation of agent/api/openapi.json, positive and
negative inputs, with the device key and in local mode (open). Zero server errors and zero
answers that break the schema (status code, content type, body, headers).

Then a header pass: the key header and query come from schemathesis' security parameters
(`with_security_parameters`, fuzzed in negative mode) or are the device key, and
`Authorization`, `Content-Type`, `Content-Encoding`, `Accept` and a made-up header get
arbitrary bytes, non-ASCII included. Every answer must be below 500 (schemathesis'
`not_a_server_error`), and every error a JSON `{status: "failed", message}` — except the plain
400 aiohttp's HTTP parser gives a message it can't decode (`Content-Encoding: br` without
Brotli, a gzip header on a plain body), which never reaches the agent's code."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from testbed.targets import device_target
from tests.helpers import wait_until
from tests.integration.api_helpers import APP, deploy, two_services

SCHEMA = Path(__file__).resolve().parents[2] / "agent" / "api" / "openapi.json"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = 25
# "this device has no such thing": documented answers, not server errors
HONEST_501 = {"POST /v2/journal-logs"}
# the reference's 503s for a client's mistake (its catch-all answer), kept for compatibility:
# an app the device doesn't have (restart/purge), a service it doesn't have (containerId)
REFERENCE_503 = {
    "POST /v1/restart": "is not in the current state",
    "POST /v1/purge": "is not in the current state",
    "POST /v2/applications/{appId}/restart": "is not in the current state",
    "POST /v2/applications/{appId}/purge": "is not in the current state",
    "GET /v2/containerId": "Could not find service with that name",
}


def _reference_503(label: str, response: requests.Response) -> bool:
    wanted = REFERENCE_503.get(label)
    return response.status_code == 503 and wanted is not None and wanted in response.text


# a header value as HTTP allows it (RFC 9110: visible ASCII, space, tab and obs-text, i.e.
# any byte from 0x80 on, non-UTF-8 included): control characters are refused by aiohttp's
# parser with its own plain 400 before any of the agent's code runs
HEADER_VALUE = st.binary(max_size=48).map(
    lambda raw: bytes(b for b in raw if (b >= 0x20 and b != 0x7F) or b == 0x09).lstrip(b" \t")
)
KEY_SHAPES = (b"Bearer ", b"ApiKey ", b"bearer  ", b"")


def extra_headers(device_key: str) -> st.SearchStrategy[dict[str, bytes]]:
    authorization = st.one_of(
        st.just(f"Bearer {device_key}".encode()),
        st.builds(lambda shape, v: shape + v, st.sampled_from(KEY_SHAPES), HEADER_VALUE),
    )
    content_type = st.one_of(
        st.sampled_from(
            [
                b"application/json",
                b"application/json; charset=latin-1",
                b"application/x-www-form-urlencoded",
                b"multipart/form-data; boundary=x",
                b"text/plain; charset=\xff",
            ]
        ),
        HEADER_VALUE,
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "Authorization": authorization,
            "Content-Type": content_type,
            "Content-Encoding": st.sampled_from([b"gzip", b"deflate", b"br", b"x-nope"]),
            "Accept": HEADER_VALUE,
            "X-Fuzz": HEADER_VALUE,
        },
    )


def fuzz(base_url: str, headers: dict[str, str], skip: set[str]) -> tuple[Counter, list[str]]:
    schema = schemathesis.openapi.from_path(str(SCHEMA))
    counts: Counter = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here
        if operation.label in skip:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _runner(operation, mode, base_url, headers, counts, failures)()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
                counts["no negative cases"] += 1
    return counts, failures


# one hypothesis setting for both schemathesis passes (keyed and header fuzzing)
SCHEMA_RUN = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _runner(operation, mode, base_url, headers, counts, failures):
    streaming = "streaming" in (operation.definition.raw.get("tags") or [])

    @SCHEMA_RUN
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        if headers:  # the fixed key: a generated `?apikey=` would win over it
            case.query = {k: v for k, v in (case.query or {}).items() if k != "apikey"}
        if streaming:  # schemathesis would read the endless body: look at the head only
            kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
            response = requests.request(**kwargs, stream=True, timeout=30)
            if response.status_code == 200:
                response.close()
        else:
            response = case.call(base_url=base_url, headers=headers, timeout=60)
        counts["requests"] += 1
        if _reference_503(operation.label, response):
            counts["reference's 503"] += 1
            return  # documented: the reference's answer (README, API differences)
        counts[response.status_code] += 1
        if response.status_code == 501 and operation.label in HONEST_501:
            return  # documented: this host has no journald
        if response.status_code >= 500:
            failures.append(f"{operation.label}: {response.status_code} {case.as_curl_command()}")
            return
        if streaming and response.status_code == 200:
            ctype = response.headers.get("Content-Type", "")
            if not ctype.startswith(("application/x-ndjson", "text/plain")):
                failures.append(f"{operation.label}: content type {ctype}")
            return
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # a schemathesis FailureGroup: record it and go on
            failures.append(f"{operation.label}: {exc}"[:2000])

    return run


def test_schemathesis_zero_server_errors_zero_schema_violations(device, images):
    deploy(device, images)
    agent = device.agent
    keyed, keyed_failures = fuzz(
        agent.api_url,
        {"Authorization": f"Bearer {agent.api_key()}"},
        skip={"POST /v1/regenerate-api-key"},  # it would end this pass's key
    )
    # then open, in local mode, every operation
    target = device_target(
        {APP: two_services(images)}, name="api-device", config={"BALENA_SUPERVISOR_LOCAL_MODE": "1"}
    )
    device.cloud.set_target(device.uuid, target)
    agent.api("POST", "/v1/update", {"force": True})
    wait_until(lambda: agent.api("GET", "/v2/version", key=None).status == 200, 20)
    local, local_failures = fuzz(agent.api_url, {}, skip=set())
    print(f"schemathesis: keyed {dict(keyed)}, local mode {dict(local)}")
    assert not keyed_failures + local_failures, "\n\n".join(keyed_failures + local_failures)
    server_errors = [c for c in (*keyed, *local) if isinstance(c, int) and c >= 500 and c != 501]
    assert not server_errors
    assert keyed["requests"] > 500 and local["requests"] > 500


def fuzz_headers(base_url: str, device_key: str) -> tuple[Counter, list[str]]:
    schema = schemathesis.openapi.from_path(str(SCHEMA))
    counts: Counter = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here
        if operation.label == "POST /v1/regenerate-api-key":
            continue  # a fuzzed request with the device key would end it
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _header_runner(operation, mode, base_url, device_key, counts, failures)()
            except Unsatisfiable:
                counts["no negative cases"] += 1
    return counts, failures


def _header_runner(operation, mode, base_url, device_key, counts, failures):
    streaming = "streaming" in (operation.definition.raw.get("tags") or [])

    @SCHEMA_RUN
    @given(
        case=operation.as_strategy(generation_mode=mode),
        extra=extra_headers(device_key),
        keep_query_key=st.booleans(),
    )
    def run(case, extra, keep_query_key) -> None:
        if not keep_query_key:
            case.query = {k: v for k, v in (case.query or {}).items() if k != "apikey"}
        kwargs = case.as_transport_kwargs(base_url=base_url)
        kwargs["headers"] = {**(kwargs.get("headers") or {}), **extra}
        response = requests.request(**kwargs, stream=streaming, timeout=60)
        try:
            counts["requests"] += 1
            if _reference_503(operation.label, response):
                counts["reference's 503"] += 1
                return
            counts[response.status_code] += 1
            if response.status_code == 501 and operation.label in HONEST_501:
                return
            if streaming and response.status_code == 200:
                return  # an endless body: the head is what counts
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except Exception:
                failures.append(
                    f"{operation.label}: {response.status_code} {response.text[:300]} "
                    f"headers={kwargs['headers']!r} {case.as_curl_command()}"
                )
                return
            parser_refused = response.headers.get("Content-Type", "").startswith("text/plain")
            if response.status_code == 400 and parser_refused:
                counts["refused by the HTTP parser"] += 1
                return  # aiohttp's own 400 for bytes HTTP forbids (an undecodable encoding)
            if response.status_code >= 400:
                try:
                    body = response.json()
                except ValueError:
                    body = response.text[:300]
                if not (
                    isinstance(body, dict)
                    and body.get("status") == "failed"
                    and isinstance(body.get("message"), str)
                ):
                    failures.append(
                        f"{operation.label}: {response.status_code} error body {body!r} "
                        f"headers={kwargs['headers']!r}"
                    )
        finally:
            response.close()

    return run


def test_schemathesis_header_fuzzing_zero_server_errors(device, images):
    deploy(device, images)
    agent = device.agent
    counts, failures = fuzz_headers(agent.api_url, agent.api_key())
    print(f"schemathesis headers: {dict(counts)}")
    assert not failures, "\n\n".join(failures[:20])
    assert not [c for c in counts if isinstance(c, int) and c >= 500 and c != 501]
    assert counts[401] > 100 and counts[200] > 100 and counts["requests"] > 1000
    assert agent.api("GET", "/ping", key=None).status == 200
