"""A real moto S3 server over HTTP on a free local port, for tests that must exercise the wire (presigned URLs,
streaming bodies, network errors), which in-process `mock_aws` patching cannot.

Usage in a test module or conftest::

    @pytest.fixture(scope="session")
    def moto_endpoint() -> Iterator[str]:
        with running_moto_server() as endpoint_url:
            yield endpoint_url

moto keeps its state in process-wide memory and holds whole objects in RAM: use a unique bucket per test when
tests could interfere, and keep test objects small.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer

# Dummy credentials for boto3's default chain; moto accepts any, and these can never reach real AWS.
MOTO_ENV: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Would override or confuse the dummy credentials above if inherited from a developer's shell.
_AWS_ENV_TO_CLEAR = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


def start_moto_server() -> tuple[ThreadedMotoServer, str]:
    """Start moto on 127.0.0.1 with an OS-chosen port; the caller must `server.stop()` it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@contextmanager
def running_moto_server(*, set_env: bool = True) -> Iterator[str]:
    """Yield the endpoint URL of a fresh moto server, with dummy AWS credentials in `os.environ` meanwhile.

    The environment is restored and the server stopped on exit.
    """
    saved = {name: os.environ.get(name) for name in (*MOTO_ENV, *_AWS_ENV_TO_CLEAR)}
    if set_env:
        for name in _AWS_ENV_TO_CLEAR:
            os.environ.pop(name, None)
        os.environ.update(MOTO_ENV)
    server, endpoint_url = start_moto_server()
    try:
        yield endpoint_url
    finally:
        server.stop()
        if set_env:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
