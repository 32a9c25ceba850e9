import pytest

from agent.model.current import normalize_image_ref, split_image_ref


@pytest.mark.parametrize(
    ("ref", "norm"),
    [
        ("busybox", "busybox:latest"),
        ("docker.io/library/busybox:1", "busybox:1"),
        ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
        ("127.0.0.1:5000/app:v2", "127.0.0.1:5000/app:v2"),
        ("127.0.0.1:5000/app@sha256:ab", "127.0.0.1:5000/app@sha256:ab"),
        ("127.0.0.1:5000/app:v2@sha256:ab", "127.0.0.1:5000/app@sha256:ab"),
    ],
)
def test_normalize(ref, norm):
    assert normalize_image_ref(ref) == norm


def test_split_for_pull():
    assert split_image_ref("127.0.0.1:5000/app@sha256:ab") == ("127.0.0.1:5000/app", "sha256:ab")
    assert split_image_ref("127.0.0.1:5000/app") == ("127.0.0.1:5000/app", "latest")
