"""The built-in SOPs: one ``<task_type>.yaml`` per built-in task type."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from shared.sop.loader import load_sop
from shared.sop.model import Sop
from shared.sop.task_types import TASK_TYPES


def builtin_sop_text(task_type: str) -> str:
    """The YAML text of the built-in SOP for `task_type`."""
    if task_type not in TASK_TYPES:
        raise KeyError(f"unknown task type {task_type!r}")
    return resources.files(__name__).joinpath(f"{task_type}.yaml").read_text("utf-8")


@lru_cache(maxsize=len(TASK_TYPES))
def builtin_sop(task_type: str) -> Sop:
    """The built-in SOP for `task_type`, validated."""
    return load_sop(builtin_sop_text(task_type))
