"""How the CLI prints: JSON with ``--json``, otherwise an aligned table or ``key: value`` lines."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value).replace("\n", " ")


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def show(value: Any, columns: Sequence[str] | None = None, *, as_json: bool = False) -> None:
    """Print a list as a table of ``columns``, an object as ``key: value`` lines, or JSON."""
    if as_json:
        print(json.dumps(value, default=str, indent=2))
    elif isinstance(value, list):
        print(table(value, columns or sorted({k for row in value for k in row})))
    elif isinstance(value, Mapping):
        keys = columns or list(value)
        width = max((len(k) for k in keys), default=0)
        for key in keys:
            print(f"{key.ljust(width)}  {_cell(value.get(key))}")
    else:
        print(_cell(value))
