"""schemathesis against the live API: every operation of agent/api/openapi.json, positive and
negative inputs, with the device key and in local mode (open). Zero server errors and zero
answers that break the schema (status code, content type, body, headers)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
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
HONEST_501 = {"POST /v1/blink", "POST /v2/journal-logs", "POST /v1/update"}


def fuzz(base_url: str, headers: dict[str, str], skip: set[str]) -> tuple[Counter, list[str]]:
    schema = schemathesis.openapi.from_path(str(SCHEMA))
    counts: Counter = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in skip:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _runner(operation, mode, base_url, headers, counts, failures)()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
                counts["no negative cases"] += 1
    return counts, failures


def _runner(operation, mode, base_url, headers, counts, failures):
    streaming = "streaming" in (operation.definition.raw.get("tags") or [])

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        if streaming:  # schemathesis would read the endless body: look at the head only
            kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
            response = requests.request(**kwargs, stream=True, timeout=30)
            if response.status_code == 200:
                response.close()
        else:
            response = case.call(base_url=base_url, headers=headers, timeout=60)
        counts[response.status_code] += 1
        counts["requests"] += 1
        if response.status_code == 501 and operation.label in HONEST_501:
            return  # documented: this device has no LED / journald / update cancelling
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
