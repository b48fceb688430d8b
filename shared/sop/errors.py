"""Why an SOP document is refused."""

from __future__ import annotations

from typing import Any


class SopInvalid(ValueError):
    """An SOP document that does not validate; `errors` lists every problem found."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        first = errors[0] if errors else {"line": None, "path": "", "message": "invalid"}
        where = f"line {first['line']}: " if first.get("line") else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"invalid SOP: {where}{first['path']}: {first['message']}{more}")


class SopLimitExceeded(SopInvalid):
    """An SOP document over one of its limits; `limit` names the setting, `max` its value."""

    def __init__(self, limit: str, maximum: int, message: str, line: int | None = None) -> None:
        self.limit = limit
        self.max = maximum
        super().__init__([{"line": line, "path": "", "message": message, "limit": limit}])
