"""A failed pull is translated once (issue 15 point 5): whether the engine refuses the request
(an HTTP error, the SDK's APIError) or reports the failure inside the progress stream, the same
words make the same agent error."""

from __future__ import annotations

import docker.errors
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from agent.engine.docker import pull_error
from agent.engine.pull import PullProgress, PullStreamError
from agent.engine.registry import RegistryAuth
from agent.errors import PullError, RegistryAuthRefused

REF = "registry.example/app/main:v1"
CLOUD = "registry.example"
AUTH = RegistryAuth(CLOUD, "d_abc", "secret")


def refused(status: int, detail: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("refused", response=response, explanation=detail)


def streamed(detail: str) -> PullStreamError:
    with pytest.raises(PullStreamError) as caught:
        PullProgress().feed({"error": detail, "errorDetail": {"message": detail}})
    return caught.value


details = st.one_of(
    st.text(min_size=1, max_size=60),  # (no words: each side names the failure its own way)
    st.sampled_from(
        [
            "unauthorized: authentication required",
            "Get https://x/v2/: no basic auth credentials",
            "manifest unknown",
            "dial tcp: connection refused",
            "pull access denied, repository does not exist or may require 'docker login'",
        ]
    ),
)


@given(details, st.sampled_from([AUTH, None]))
def test_the_same_words_make_the_same_error_from_the_request_or_the_stream(detail, auth):
    from_request = pull_error(REF, refused(500, detail), auth, CLOUD)
    from_stream = pull_error(REF, streamed(detail), auth, CLOUD)
    assert type(from_request) is type(from_stream)
    assert str(from_request) == str(from_stream)
    assert str(from_request).startswith(f"{REF}: ")


@pytest.mark.parametrize("status", [401, 403])
def test_a_401_or_403_is_a_refusal_whatever_the_words(status):
    error = pull_error(REF, refused(status, "nope"), AUTH, CLOUD)
    assert isinstance(error, RegistryAuthRefused)
    assert "refused the device's credentials (nope)" in str(error)


def test_not_found_says_so():
    response = requests.Response()
    response.status_code = 404
    gone = docker.errors.NotFound("404", response=response, explanation="no such image")
    error = pull_error(REF, gone, None, CLOUD)
    assert type(error) is PullError
    assert str(error) == f"{REF}: not found in the registry (no such image)"
