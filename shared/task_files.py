"""Task files: many tasks in one file, as a clinic exports them, for one batch or several.

A CSV file has a header row, a ``type`` column unless one type is chosen for the whole file,
and its other non-empty cells as the task's data (keys as loose as ``data`` takes them). Any
other file holds JSON lines, each ``{"type": ..., "data": ...}``. Each task keeps its line in
the file, so that a refusal can name the line to fix. The CLI (``understudy tasks batch``) and
the console's "New tasks" page read files here.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from shared.inputs import loads_json

# The byte order mark a spreadsheet may write first; it is no part of the first column's name.
_BOM = "\ufeff"


class TaskFileError(ValueError):
    """The file cannot be read as tasks; the message says where and why."""


def read_task_file(
    text: str,
    *,
    is_csv: bool,
    task_type: str | None = None,
    choose_type: str = "choose one",
    max_rows: int | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    """The file's tasks, each with its line number in the file. ``task_type`` is the type of
    every row that names none; ``choose_type`` says, in a refusal, how to choose it. With
    ``max_rows``, reading stops at the row after it: the caller refuses a file that has more,
    without reading (or checking) the rest of it."""
    text = text.removeprefix(_BOM)
    rows: list[tuple[int, dict[str, Any]]] = []
    room = None if max_rows is None else max_rows + 1
    if is_csv:
        reader = csv.DictReader(io.StringIO(text))
        try:
            for row in reader:
                cells = {k.strip(): v.strip() for k, v in row.items() if k and v and v.strip()}
                kind = cells.pop("type", None) or task_type
                rows.append((reader.line_num, {"type": kind, "data": cells}))
                if len(rows) == room:
                    break
        except csv.Error as err:
            raise TaskFileError(f"line {reader.line_num} is not CSV: {err}") from err
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if len(rows) == room:
                break
            if line.strip():
                try:
                    item = loads_json(line)
                except RecursionError as err:
                    raise TaskFileError(f"line {number} is nested too deep") from err
                except ValueError as err:
                    raise TaskFileError(f"line {number} is not JSON: {err}") from err
                if not isinstance(item, dict):
                    raise TaskFileError(f"line {number} is not a JSON object")
                rows.append((number, {"type": item.get("type") or task_type,
                                      "data": item.get("data")}))  # fmt: skip
    if not rows:
        raise TaskFileError("the file holds no tasks")
    missing = [str(number) for number, task in rows if not task["type"]]
    if missing:
        raise TaskFileError(
            f"no task type on line {', '.join(missing)}: add a type column, or {choose_type}"
        )
    return rows


def name_lines(problems: list[dict[str, Any]], lines: list[int]) -> list[dict[str, Any]]:
    """A batch's refusal (the 422's problems, each naming its field as ``tasks.3.member_id``)
    with each task's field named by the task's line in the file instead: ``line 5 member_id``.
    ``lines`` holds the batch's tasks' lines, in order."""
    named = []
    for problem in problems:
        parts = str(problem.get("field") or "").split(".", 2)
        if len(parts) >= 2 and parts[0] == "tasks" and parts[1].isdigit():
            index = int(parts[1])
            if index < len(lines):
                problem = {**problem, "field": " ".join([f"line {lines[index]}", *parts[2:]])}
        named.append(problem)
    return named
