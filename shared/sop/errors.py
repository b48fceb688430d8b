"""Why an SOP document is refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

R = TypeVar("R")
E = TypeVar("E", bound="StoredVersionRefused")


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


class StoredVersionRefused(Exception):
    """A stored version (of an SOP, of a portal's profile) that this release's rules refuse.

    It passed the rules in force when it was stored; a later release may refuse it (a new
    rule, a renamed field). It stays readable as text, with ``errors`` (as :class:`SopInvalid`
    lists them), and nothing runs it: :attr:`message` is what a creation's refusal and a
    task's notes say, naming the document, its version and the problem, and how to replace it.
    """

    def __init__(
        self,
        document: str,
        replace: str,
        errors: list[dict[str, Any]],
        *,
        version: int | None = None,
        text: str = "",
    ) -> None:
        self.document = document  # "the SOP for check_eligibility (version 3)"
        self.replace = replace  # how to store a new version: "PUT /sops/check_eligibility"
        self.errors = errors
        self.version = version
        self.text = text
        super().__init__(self.message)

    @property
    def problem(self) -> str:
        """The first problem with its line and path, and how many more there are."""
        first = self.errors[0] if self.errors else {"message": "invalid"}
        where = f"line {first['line']}: " if first.get("line") else ""
        path = f"{first['path']}: " if first.get("path") else ""
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        return f"{where}{path}{first['message']}{more}"

    @property
    def message(self) -> str:
        return (
            f"{self.document[:1].upper()}{self.document[1:]} was stored under earlier rules"
            f" that this release of Understudy refuses: {self.problem}. Store a new version"
            f" with {self.replace}"
        )


class StoredSopRefused(StoredVersionRefused):
    """A stored SOP version that this release's rules refuse (see StoredVersionRefused)."""

    def __init__(
        self, err: SopInvalid, *, sop_id: int, task_type: str, version: int, builtin: bool,
        text: str,
    ) -> None:  # fmt: skip
        self.id = sop_id  # as StoredSop.id
        self.task_type = task_type
        self.builtin = builtin
        which = "the built-in SOP" if builtin else "the SOP"
        super().__init__(
            f"{which} for {task_type} (version {version})", f"PUT /sops/{task_type}",
            err.errors, version=version, text=text,
        )  # fmt: skip


class StoredProfileRefused(StoredVersionRefused):
    """A stored profile version that this release's rules refuse (see StoredVersionRefused)."""

    def __init__(
        self, err: SopInvalid, *, portal: str, version: int, text: str,
        created_at: datetime | None = None,
    ) -> None:  # fmt: skip
        self.portal = portal
        self.created_at = created_at
        super().__init__(
            f"the profile of portal {portal} (version {version})",
            f"PUT /portals/{portal}/profile", err.errors, version=version, text=text,
        )  # fmt: skip


def or_refused(refused: type[E], read: Callable[..., R], *args: Any) -> R | E:
    """What ``read(*args)`` gives, or the refusal (of type ``refused``: what ``read`` raises)
    it raised for a stored version this release's rules refuse (shown with its text and
    problems; nothing runs it)."""
    try:
        return read(*args)
    except refused as err:
        return err
