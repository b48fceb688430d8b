"""Hostile pages under /__sandbox/hostile, for testing the agent's egress boundary.

Each page, served from the portal's own origin, tries to make the browser reach ``?url=``: in a
frame, with ``fetch``, with ``window.open``, or by a redirect. When the attempt is over the
page shows "Attempt finished" (with what happened), so an SOP can wait for it.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, redirect, request
from markupsafe import escape

bp = Blueprint("hostile", __name__, url_prefix="/__sandbox/hostile")

_PAGE = """<!doctype html>
<html><head><title>Hostile page</title></head>
<body><h1>Hostile page</h1><p id="what">{what}</p><div id="slot"></div>
<script>
const target = {target};
function finished(detail) {{
  const p = document.createElement("p");
  p.setAttribute("role", "status");
  p.textContent = "Attempt finished: " + detail;
  document.body.appendChild(p);
}}
{script}
</script></body></html>"""

_SCRIPTS = {
    "frame": """
const frame = document.createElement("iframe");
frame.src = target;
frame.onload = () => finished("frame loaded");
document.getElementById("slot").appendChild(frame);
""",
    "fetch": """
fetch(target, {mode: "no-cors"}).then(() => finished("fetch answered"),
                                      (e) => finished("fetch failed"));
""",
    "open": """
const opened = window.open(target, "_blank");
setTimeout(() => finished(opened ? "window opened" : "window blocked"), 1500);
""",
}


def _target() -> str:
    return request.args.get("url", "")


@bp.get("/<kind>")
def attempt(kind: str) -> Any:
    if kind == "redirect":
        return redirect(_target(), code=302)
    if kind not in _SCRIPTS:
        return "unknown hostile page", 404
    page = _PAGE.format(
        what=escape(f"{kind}: {_target()}"),
        target=json.dumps(_target()).replace("<", "\\u003c"),
        script=_SCRIPTS[kind],
    )
    return page, 200, {"Content-Type": "text/html; charset=utf-8"}
