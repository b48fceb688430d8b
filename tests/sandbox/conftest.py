"""Fixtures for the sandbox portal tests: apps with quick settings, clients, a fake clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import sandbox

from .helpers import FakeClock, sign_in

BASE_CONFIG: dict[str, Any] = {
    "SECRET_KEY": "test-secret",
    "modal": "never",
    "spinner_s": 0,
    "slow_page_s": 0,
    "seed": 7,
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(clock: FakeClock) -> Callable[..., Flask]:
    """Build an app with quick test defaults; keyword arguments override config keys."""

    def build(**overrides: Any) -> Flask:
        return sandbox.create_app({**BASE_CONFIG, "clock": clock, **overrides})

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


@pytest.fixture
def portal(client: FlaskClient) -> FlaskClient:
    """A client signed in (no MFA user) with payer "Sandbox Health" chosen."""
    sign_in(client)
    return client
