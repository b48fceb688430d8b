"""Values as the agent records them: JSON-able, and short enough for a step's message."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from shared.inputs import PersonName


def jsonable(value: Any) -> Any:
    """`value` as JSON types (a name becomes its text). A float JSON has no number for (NaN,
    Infinity: `"nan" | float` of a page's text) becomes null, as a browser's JSON writer makes
    it, so that the result, `GET /tasks/{id}` and the webhook all say the same."""
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def short(text: str, limit: int = 80) -> str:
    """`text`, cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
