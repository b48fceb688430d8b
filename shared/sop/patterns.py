"""Regular expressions that SOPs and portal profiles bring, matched by RE2 in time linear in the
text.

An SOP is a customer's program, and what its patterns meet is a portal's page or a client's
data. Python's own engine backtracks: ``^(a+)+$`` against 40 ``a`` and a ``!`` runs for hours
inside one C call that holds the GIL, where neither the template sandbox's deadline nor the
API's request deadline can stop it. RE2 never backtracks, so no pattern and no text can make a
match slow. Its syntax is Python's without lookaround (``(?=``, ``(?!``, ``(?<=``, ``(?<!``),
backreferences (``\\1``) and possessive or atomic groups; a pattern using them is refused when
the SOP or profile is stored, at its line (:func:`problem`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

SYNTAX = "RE2 syntax: no lookaround and no backreferences"


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message says why."""


@lru_cache(maxsize=512)
def compiled(pattern: str, ignore_case: bool = False) -> Any:
    """The pattern compiled once per process (each compile is bounded by RE2's memory limit)."""
    options = re2.Options()
    options.log_errors = False  # the error is raised, with its reason; RE2 would log it too
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(f"bad regular expression: {reason} ({SYNTAX})") from None


def problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be used, or None."""
    try:
        compiled(pattern)
    except PatternError as exc:
        return str(exc)
    return None


def search(pattern: str, text: str, *, ignore_case: bool = False) -> Any:
    """The first match of ``pattern`` in ``text`` (``.group()``, ``.groups()`` as ``re``'s),
    or None; :class:`PatternError` if the pattern cannot be compiled."""
    return compiled(pattern, ignore_case).search(text)
