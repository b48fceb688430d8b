"""Which function carries out each step kind: a registry from step dataclass to handler.

A handler takes the run, the step and where the step is (`At`), and returns the message to
record with the step, or None if it recorded the step itself (control flow records itself
before its children). Handlers register with :func:`handles`; a parity test checks that every
step kind of :mod:`shared.sop.model` has exactly one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.sop.model import Step

if TYPE_CHECKING:
    from worker.agent.interpreter import Run


@dataclass(frozen=True)
class At:
    """Where a step runs: its number (``3.2``), its recorded name and when it started."""

    index: str
    name: str
    started: datetime
    t0: float  # time.monotonic() at the start
    kind: str = "other"  # the step's kind, for the recorder's metrics


@dataclass(frozen=True)
class Handler:
    """A step kind's handler; `redo_when_stale` if it acts on an element that a navigation
    may replace under it (the action then did not happen, and is done again)."""

    run: Callable[[Run, Any, At], str | None]
    redo_when_stale: bool = False


HANDLERS: dict[type[Step], Handler] = {}


def handles(kind: type[Step], *, redo_when_stale: bool = False):
    """Register the decorated function as the handler of step dataclass `kind`."""

    def register(fn: Callable[[Run, Any, At], str | None]):
        if kind in HANDLERS:
            raise RuntimeError(f"two handlers for {kind.__name__}")
        HANDLERS[kind] = Handler(fn, redo_when_stale)
        return fn

    return register
