"""schemathesis against the served OpenAPI document: every operation, and the stateful links
create -> read/cancel/input/trajectory. No 5xx, and no answer outside the document."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.stateful import run_state_machine_as_test
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.openapi import TASK_EXAMPLES
from tests.conftest import ServedApp

pytestmark = pytest.mark.fuzz

# A body can fit the schema and still be refused for what it means (an SOP that does not parse,
# task data without a member): a 422 there is right, so schema-valid need not mean accepted.
SEMANTIC = [positive_data_acceptance]

# Invalid input may be refused for its size before its shape: more than MAX_FILES files is a 413,
# which the document declares. schemathesis's default list of refusals lacks it.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [
                    400,
                    401,
                    403,
                    404,
                    405,
                    406,
                    409,
                    413,
                    415,
                    422,
                    428,
                    429,
                    "5xx",
                ]
            }
        }
    }
)


def load_schema(url: str):
    """The served document, checked with CONFIG."""
    return schemathesis.openapi.from_url(f"{url}/openapi.json", config=CONFIG)


@pytest.fixture
def served_url(app) -> Iterator[str]:
    server = ServedApp(app)
    yield server.url
    server.close()


@pytest.fixture
def api_schema(served_url):
    return load_schema(served_url)


def every_operation_conforms(api_schema, headers: dict[str, str], max_examples: int) -> None:
    """Each operation with generated valid and invalid input; every failure is listed."""
    failures = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 27
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            case.call_and_validate(headers=headers, excluded_checks=SEMANTIC)

        try:
            check()
        except Exception as err:  # noqa: BLE001 - collected, reported all at once below
            failures[operation.label] = str(err)[:2000]
    assert failures == {}


def task_life_follows_the_links(api_schema, headers: dict[str, str], max_examples: int) -> None:
    """The task's life as a client lives it: the links of a created task, walked one by one,
    every answer checked against the document; then the stateful fuzzer, which follows the
    links with generated requests (no 5xx, nothing off-schema)."""
    walk_task_links(api_schema, headers)
    workflow = api_schema.include(path_regex="^/tasks").as_state_machine()

    class Workflow(workflow):  # type: ignore[misc, valid-type]
        def before_call(self, case):
            # Fuzzed `data` almost never names a real member, so most creations would be 422s and
            # the links would not be followed: a create of a known type gets that type's example.
            body = case.body
            known = isinstance(body, dict) and body.get("type") in TASK_EXAMPLES
            if case.operation.label == "POST /tasks" and known:
                body["data"] = TASK_EXAMPLES[body["type"]]
            # hypothesis replays the start of a scenario to explore from it: a generated key would
            # then replay an earlier task (already canceled, say), and the scenario would change
            if case.headers and "Idempotency-Key" in case.headers:
                case.headers["Idempotency-Key"] = uuid.uuid4().hex

        def get_call_kwargs(self, case):
            return {"headers": headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=SEMANTIC,
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    run_state_machine_as_test(
        Workflow,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=5,
            derandomize=True,  # the same scenarios on every run, so CI is repeatable
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def walk_task_links(api_schema, headers: dict[str, str]) -> None:
    """Create a task, then take every link its 200 declares, with the id the link names."""
    document = api_schema.raw_schema
    by_id = {
        op["operationId"]: (path, method.upper())
        for path, item in document["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }
    links = document["paths"]["/tasks"]["post"]["responses"]["200"]["links"]
    assert {"ReadTask", "CancelTask"} <= set(links)
    base = api_schema.get_base_url()
    body = {"type": "check_eligibility", "data": TASK_EXAMPLES["check_eligibility"]}
    created = requests.post(f"{base}/tasks", json=body, headers=headers, timeout=30)
    api_schema["/tasks"]["POST"].validate_response(created)
    assert created.status_code == 200, created.text
    answers = {}
    for name in ("ReadTask", "CancelTask", "ReadTrajectory", "ReadTask"):
        path, method = by_id[links[name]["operationId"]]
        assert links[name]["parameters"] == {"task_id": "$response.body#/id"}
        url = base + path.replace("{task_id}", str(created.json()["id"]))
        answer = requests.request(method, url, headers=headers, timeout=30)
        api_schema[path][method].validate_response(answer)
        answers[name] = answer
    # read, canceled at once while queued (200) or before its next step if claimed (202),
    # and read again: canceled, or still running towards its cancel
    assert answers["CancelTask"].status_code in (200, 202), answers["CancelTask"].text
    assert answers["ReadTask"].json()["id"] == created.json()["id"]
    assert answers["ReadTrajectory"].status_code == 200


def test_every_operation_conforms(api_schema, account):
    every_operation_conforms(api_schema, account.headers, max_examples=8)


def test_stateful_create_then_read_cancel_input_trajectory(api_schema, account):
    task_life_follows_the_links(api_schema, account.headers, max_examples=15)
