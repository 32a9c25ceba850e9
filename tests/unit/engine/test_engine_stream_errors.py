"""A stream cut mid-read (dockerd restarting) surfaces from urllib3, not requests: the engine
adapter must still turn it into an agent error, or it kills the apply loop."""

import threading

import pytest
import urllib3.exceptions

from agent.engine.docker import DockerEngine, _translated
from agent.errors import EngineUnavailable, PullError

CUT = urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(0 bytes read)")


class Response:
    """A pull's progress stream: two events, then the connection breaks."""

    def raise_for_status(self):
        pass

    def iter_lines(self):
        yield b'{"status": "Pulling fs layer", "id": "a"}'
        yield b'{"status": "Downloading", "id": "a", "progressDetail": {"current": 1, "total": 9}}'
        raise CUT

    def close(self):
        pass


class CutMidPull:
    """Just enough of docker.APIClient (a requests.Session) for DockerEngine.pull."""

    base_url = "http+docker://localhost"
    api_version = "1.41"

    def post(self, url, **kwargs):
        return Response()


async def test_a_pull_whose_stream_is_cut_is_a_pull_error():
    engine = DockerEngine("unix:///nonexistent.sock")
    engine._api = CutMidPull()
    try:
        with pytest.raises(PullError, match="connection to the engine lost"):
            await engine.pull("reg:5000/app/main:v1", lambda p, b: None, threading.Event())
    finally:
        engine._api = None
        engine.close()


def test_other_engine_calls_cut_mid_read_are_engine_unavailable():
    with (
        pytest.raises(EngineUnavailable, match="connection to the engine lost"),
        _translated("list containers"),
    ):
        raise CUT
