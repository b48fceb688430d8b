"""Sandbox payer portal: a stand-in payer portal for testing the Understudy agent end to end.

Behaviour (pages, labels, test members, fault switches) is specified in docs/sandbox.md.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask, g, request

from . import faults, forms
from .store import Store, initial_faults

# create_app keys that configure the store rather than Flask.
_STORE_KEYS = {*faults.DEFAULTS, "clock", "seed"}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build a sandbox portal app with its own in-memory state.

    ``config`` may hold any fault switch of docs/sandbox.md (``down``, ``slow_s``,
    ``slow_page_s``, ``spinner_s``, ``session_ttl_s``, ``expire_after_requests``, ``modal``,
    ``layout``) as the start-up values that ``POST /__sandbox/reset`` returns to; ``seed``
    (int) to make the random modal and references reproducible; ``clock`` (a callable giving
    seconds, for session expiry in tests); and Flask settings such as ``SECRET_KEY``.
    """
    config = dict(config or {})
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secrets.token_hex(32),
        SESSION_COOKIE_NAME="sandbox_session",
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=25 * 1024 * 1024,
    )
    app.config.update({k: v for k, v in config.items() if k not in _STORE_KEYS})
    app.extensions["sandbox_store"] = Store(
        initial_faults(config), clock=config.get("clock"), seed=config.get("seed")
    )

    faults.init_app(app)

    from . import (
        admin,
        appeals,
        auth,
        claim_status,
        claims,
        eligibility,
        hostile,
        hub,
        lab,
        portal,
        prior_auth,
        staff,
        users,
    )

    for module in (
        auth,
        portal,
        eligibility,
        claims,
        prior_auth,
        appeals,
        claim_status,
        users,
        staff,
        admin,
        hostile,
        hub,
        lab,
    ):
        app.register_blueprint(module.bp)

    @app.context_processor
    def _template_helpers() -> dict[str, Any]:
        return {
            "layout": forms.layout(),
            "new_id": forms.new_id,
            "field_name": forms.field_name,
            "ordered": forms.ordered,
            "portal": g.get("portal"),
            "payer_names": dict(forms.PAYERS),
            "page_path": request.full_path if request.query_string else request.path,
        }

    return app
