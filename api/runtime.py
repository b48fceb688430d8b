"""Access to the process runtime from request handlers."""

from __future__ import annotations

from flask import current_app

from shared.runtime import Runtime


def runtime() -> Runtime:
    return current_app.extensions["understudy"]
