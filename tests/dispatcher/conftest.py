"""Fixtures for webhook delivery tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from shared.accounts import create_account
from shared.runtime import Runtime
from shared.webhooks import create_endpoint
from tests.dispatcher.support import Account, Receiver, served_receiver, with_settings


@pytest.fixture
def runtime(runtime: Runtime) -> Runtime:
    """The test runtime with the circuit breaker out of the way; breaker tests turn it on."""
    return with_settings(runtime, webhook_breaker_failures=1000)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with served_receiver() as recv:
        yield recv


@pytest.fixture
def make_account(runtime: Runtime) -> Callable[..., Account]:
    def make(url: str | None, name: str = "Acme Health") -> Account:
        with runtime.pool.connection() as conn:
            account_id = create_account(conn, name)
            secret = create_endpoint(conn, runtime.fernet, account_id, url)
        return Account(account_id, secret)

    return make


@pytest.fixture
def account(make_account, receiver: Receiver) -> Account:
    return make_account(receiver.url)
