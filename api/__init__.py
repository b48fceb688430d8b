"""The HTTP API: a thin Flask app that validates, writes to Postgres and enqueues after commit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from api.errors import register_error_handlers
from shared.lookup import Lookups
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings, load_settings
from shared.ssrf import system_resolver

if TYPE_CHECKING:
    from werkzeug.sansio.response import Response as AnyResponse


class _InOrder(DefaultJSONProvider):
    """Flask's JSON, with the keys in the order given (the task object keeps the reference
    API's field order), and answers written by orjson: the text Flask writes (but for a float's
    exponent, ``1e-7`` for ``1e-07``, and DEL, not escaped), at a twentieth of the cost. What
    orjson writes otherwise (text that is not ASCII, which Flask escapes, and an int past 64
    bits) is left to Flask."""

    sort_keys = False

    def response(self, *args: Any, **kwargs: Any) -> AnyResponse:
        if self._app.debug or self.compact is False:
            return super().response(*args, **kwargs)  # indented, for a person to read
        try:
            body = orjson.dumps(
                self._prepare_response_obj(args, kwargs), default=self.default, option=_FLASK_LIKE
            )
        except TypeError:
            return super().response(*args, **kwargs)
        if not body.isascii():
            return super().response(*args, **kwargs)
        return Response(body, mimetype=self.mimetype)


# Dates, dataclasses and keys that are not text as Flask writes them (dates through its
# `default`, as HTTP dates), and the same closing newline.
_FLASK_LIKE = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_NON_STR_KEYS
    | orjson.OPT_APPEND_NEWLINE
)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    """The app factory. Tests pass settings (or a ready runtime); production reads the env."""
    settings = settings or (runtime.settings if runtime else load_settings())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json = _InOrder(app)
    app.extensions["understudy"] = runtime or build_runtime(settings)
    # The lookups of names clients send (api.runtime.request_resolver), capped per process.
    app.extensions["understudy.lookups"] = Lookups(
        system_resolver, max_threads=settings.lookup_threads
    )
    # Logging is set up by the process (api.gunicorn_conf), not by the app: tests and other
    # hosts keep their own.

    if settings.trusted_proxies:
        # The client's address and scheme as the nearest proxies saw them; what a client writes
        # in those headers itself lies beyond them and is never read.
        hops = settings.trusted_proxies
        # Flask's documented way to add WSGI middleware; its stubs declare a method.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops
        )

    register_error_handlers(app)
    from api import (
        account_settings,
        audit,
        console,
        credentials,
        health,
        idempotency,
        limits,
        metrics,
        profiles,
        rate_limits,
        request_log,
        sops,
        tasks,
        trajectories,
        webhooks,
    )

    request_log.init_app(app)  # first: every later hook logs with the request id
    limits.init_app(app, settings)
    rate_limits.init_app(app, settings)

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(tasks.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(sops.bp)
    app.register_blueprint(credentials.bp)
    app.register_blueprint(profiles.bp)
    app.register_blueprint(trajectories.bp)
    app.register_blueprint(account_settings.bp)
    audit.init_app(app)
    idempotency.init_app(app)
    console.init_app(app)

    from api import openapi

    openapi.register(app)  # last: it documents every route registered above
    return app
