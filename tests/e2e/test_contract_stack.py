"""schemathesis against the OpenAPI document served by the whole stack (gunicorn with our worker
class, the agent workers behind it), with the checks of tests/api/test_contract_fuzz.py: every
operation, and the links create -> read/cancel/trajectory. No 5xx, nothing off-schema."""

from __future__ import annotations

import pytest

from tests.api.test_contract_fuzz import (
    every_operation_conforms,
    load_schema,
    task_life_follows_the_links,
)

pytestmark = pytest.mark.fuzz


def test_the_stack_keeps_the_contract(e2e, make_account):
    account = make_account()
    api_schema = load_schema(e2e.api_url)
    every_operation_conforms(api_schema, account.headers, max_examples=3)
    task_life_follows_the_links(api_schema, account.headers, max_examples=15)
