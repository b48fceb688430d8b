"""gunicorn's settings for the `web` process, read from the same settings object as the app.

`gunicorn -c python:api.gunicorn_conf 'api:create_app()'` (the Procfile's `web:` line). Every
gunicorn option the API relies on lives here, so the Procfile and the Kubernetes manifests
cannot drift apart.
"""

from __future__ import annotations

from shared.settings import load_settings

_settings = load_settings()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.api_workers
accesslog = "-"
