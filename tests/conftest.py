"""Fixtures shared by every test package: real services, started by the test session."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests
from werkzeug.serving import make_server


class ServedApp:
    """A WSGI app served on a free loopback port in a background thread."""

    def __init__(self, app) -> None:
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[ServedApp]:
    import sandbox

    served = ServedApp(sandbox.create_app({"modal": "random"}))
    yield served
    served.close()


@pytest.fixture
def sandbox_url(sandbox_server: ServedApp) -> str:
    """The sandbox portal's base URL, reset to its defaults for this test."""
    requests.post(f"{sandbox_server.url}/__sandbox/reset", timeout=5).raise_for_status()
    return sandbox_server.url
