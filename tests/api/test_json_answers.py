"""The API's answers are written by orjson (api._InOrder) as Flask's own JSON writes them:
the same bytes for every kind of value a handler returns, keys in the order given."""

from __future__ import annotations

import dataclasses
import decimal
import uuid
from datetime import UTC, date, datetime

import pytest
from flask import Flask
from flask.json.provider import DefaultJSONProvider

from api import _InOrder


@dataclasses.dataclass
class _Pair:
    x: int
    y: str


VALUES = [
    {"id": 1, "status": "pending", "b": None, "a": [1, 2.5, True, False]},
    {"text": 'line\nnext "quoted" </script> \u2028 \x00 tab\t'},
    {"name": "José Müller", "emoji": "\U0001f600"},  # not ASCII: Flask escapes it
    {"at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "day": date(2026, 1, 2)},
    {"id": uuid.UUID(int=5), "amount": decimal.Decimal("1.50")},
    _Pair(1, "q"),
    {1: "int key", 2.5: "float key", None: "no key"},
    {"big": 2**70, "small": -(2**63)},  # past 64 bits: Flask writes it
    [],
    None,
    "text",
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_an_answer_is_the_bytes_flask_writes(value):
    ours, flasks = Flask("ours"), Flask("flasks")
    ours.json = _InOrder(ours)
    flasks.json = DefaultJSONProvider(flasks)
    flasks.json.sort_keys = False
    with ours.app_context(), flasks.app_context():
        answer = ours.json.response(value)
        expected = flasks.json.response(value)
    assert answer.get_data() == expected.get_data()
    assert answer.mimetype == "application/json"
