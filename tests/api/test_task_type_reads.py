"""What reading the task types costs: one query whatever the number of types, no parse of a
version this process has parsed (or refused) before, whatever other accounts read meanwhile.

Parses are counted as YAML documents composed (as in test_creation_cost), queries as statements
executed.
"""

from __future__ import annotations

import psycopg
import pytest
import yaml

from shared.sop import store as sop_store
from shared.sop.library import builtin_sop_text
from tests.api.test_stored_versions import REFUSED_SOP, store_as_an_earlier_release

SOP = """
task_type: {name}
title: Read a member's plan ({name})
portal: {{name: sandbox}}
inputs:
  - {{name: member_id, format: member_id, required: true}}
steps:
  - login: {{url: /dashboard}}
  - click: {{link: Eligibility & Benefits}}
outcomes: [{{status: completed, notes: "ok"}}]
"""
CLAIM = builtin_sop_text("submit_claim")


@pytest.fixture
def parses(monkeypatch) -> list[int]:
    """One item per YAML document composed from here on."""
    built: list[int] = []
    compose = yaml.composer.Composer.compose_document

    def counted(self):
        built.append(1)
        return compose(self)

    monkeypatch.setattr(yaml.composer.Composer, "compose_document", counted)
    return built


@pytest.fixture
def statements(monkeypatch) -> list[str]:
    """The text of each statement executed from here on."""
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counted(self, query, *args, **kwargs):
        sent.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    return sent


def _define(client, account, names: list[str]) -> None:
    for name in names:
        response = client.put(
            f"/sops/{name}", json={"sop": SOP.format(name=name)}, headers=account.headers
        )
        assert response.status_code == 201, response.get_json()


def _list_types(client, account) -> list[str]:
    response = client.get("/task-types", headers=account.headers)
    assert response.status_code == 200, response.get_json()
    return [entry["name"] for entry in response.get_json()["data"]]


def _sop_queries(sent: list[str]) -> list[str]:
    return [query for query in sent if "sops" in query or "task_types" in query]


def test_listing_task_types_is_one_query_whatever_the_number_of_types(
    client, make_account, statements
):
    # given an account with no type of its own, and one with twenty, each listed once
    few, many = make_account("Few"), make_account("Many")
    _define(client, many, [f"plan_{n}" for n in range(20)])
    _list_types(client, few), _list_types(client, many)
    # when each lists its types again
    del statements[:]
    _list_types(client, few)
    for_few = _sop_queries(statements)
    del statements[:]
    assert len(_list_types(client, many)) == 5 + 20
    for_many = _sop_queries(statements)
    # then each call read the types and their active SOPs in one query
    assert len(for_few) == 1, for_few
    assert for_many == for_few


def test_listing_sops_is_two_queries_whatever_the_number_of_types(client, make_account, statements):
    # given an account with no type of its own, and one with twenty, each listed once
    few, many = make_account("Few"), make_account("Many")
    _define(client, many, [f"plan_{n}" for n in range(20)])
    for account in (few, many):
        assert client.get("/sops", headers=account.headers).status_code == 200
    # when each lists its SOPs again
    counts = []
    for account in (few, many):
        del statements[:]
        response = client.get("/sops", headers=account.headers)
        assert response.status_code == 200, response.get_json()
        counts.append((len(response.get_json()["data"]), len(_sop_queries(statements))))
    # then each call read the active versions, then when they were stored: two queries (it
    # used to be two per type)
    assert counts == [(5, 2), (25, 2)]


def test_a_big_account_cannot_evict_a_small_accounts_parsed_sops(
    client, make_account, parses, monkeypatch
):
    # given a cache of 24 parsed versions, a small account with one type of its own that has
    # listed its types, and a big account with more types than the whole cache holds
    monkeypatch.setattr(sop_store, "PARSED", sop_store.ParsedSops(max_entries=24))
    small, big = make_account("Small"), make_account("Big")
    _define(client, small, ["own_plan"])
    _define(client, big, [f"plan_{n}" for n in range(30)])
    _list_types(client, small)
    # when the big account lists its types over and over
    for _ in range(3):
        _list_types(client, big)
    # then the small account's list parses nothing again: the big one evicted only its own
    del parses[:]
    assert _list_types(client, small)[-1] == "own_plan"
    assert parses == []


def test_a_refused_version_is_parsed_once(runtime, client, account, parses):
    # given the account's active SOP of a type, stored under rules this release refuses, read
    store_as_an_earlier_release(runtime, account.id, "sops", "check_eligibility", REFUSED_SOP)
    first = client.get("/sops/check_eligibility", headers=account.headers).get_json()
    assert first["problems"], first
    # when it is read again, by itself and in the lists
    del parses[:]
    again = client.get("/sops/check_eligibility", headers=account.headers).get_json()
    listed = client.get("/task-types", headers=account.headers).get_json()["data"]
    # then the refusal is the same, and nothing was parsed again
    assert again["problems"] == first["problems"]
    assert listed[0]["name"] == "check_eligibility" and listed[0]["problems"] == first["problems"]
    assert parses == []


def test_review_for_a_type_whose_sop_is_refused_is_refused_as_such(runtime, client, account):
    # given the account's active SOP of a type that submits (one a review could hold back),
    # stored under rules this release refuses
    refused = CLAIM.replace("steps:\n", "steps:\n  - hover: {button: Search}\n", 1)
    store_as_an_earlier_release(runtime, account.id, "sops", "submit_claim", refused)
    # when the account asks for review of that type's tasks
    review_claims = {"review_required_types": ["submit_claim"]}
    response = client.put("/settings", json=review_claims, headers=account.headers)
    # then the answer says the SOP is refused, and why, as a task's creation would
    error = response.get_json()["error"]
    assert response.status_code == 422 and error["code"] == "sop_refused", error
    assert "version 1" in error["message"] and "PUT /sops/submit_claim" in error["message"]
    detail = error["details"][0]
    assert detail["field"] == "review_required_types.0" and detail["version"] == 1
    assert detail["problems"][0]["path"] == "steps[0]"
    # and a valid version again makes the setting possible
    put = client.put("/sops/submit_claim", json={"sop": CLAIM}, headers=account.headers)
    assert put.status_code == 201
    assert client.put("/settings", json=review_claims, headers=account.headers).status_code == 200
