"""The HTTP API: a thin Flask app that validates, writes to Postgres and enqueues after commit."""

from __future__ import annotations

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from api.errors import register_error_handlers
from shared.lookup import Lookups
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings, load_settings
from shared.ssrf import system_resolver


class _InOrder(DefaultJSONProvider):
    sort_keys = False  # the task object keeps the reference API's field order


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
    console.init_app(app)

    from api import openapi

    openapi.register(app)  # last: it documents every route registered above
    return app
