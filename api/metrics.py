"""/metrics: Prometheus text for every process of this host, plus gauges read at scrape time.

Open to anyone who can reach it, as /metrics usually is (it shows counts, never a task's data or
an account); set ``METRICS_TOKEN`` to require ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from api.errors import ApiError
from api.runtime import runtime
from shared import metrics

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape():
    rt = runtime()
    if not metrics.authorized(rt.settings, request.headers.get("Authorization")):
        raise ApiError(401, "unauthorized", "Send the METRICS_TOKEN as 'Authorization: Bearer'.")
    body, content_type = metrics.render(rt)
    return Response(body, content_type=content_type)
