"""Lab pages under /__sandbox/lab: small pages that each reproduce one hard case for SOPs.

Each page shows one thing that tripped an SOP written by someone new to the language: a sidebar
table met before the one wanted, content that appears late, fields named only by an image, an
ARIA attribute, a placeholder or a title, text whose letter case matters, dropdowns that are
not a <select>, and a form the page sends by script a moment after its button is clicked. They
need no sign-in and ignore ``down`` and ``slow_s``; each answers after ``?answer_after_s=`` (at
most 5) seconds, as a slow portal page does (see docs/sandbox.md).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from flask import Blueprint, abort, redirect, request, url_for
from markupsafe import escape

bp = Blueprint("lab", __name__, url_prefix="/__sandbox/lab")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>label,.field-label{{display:block;margin-top:.6em}} aside{{float:right;width:30%}}
[role=listbox]{{list-style:none;margin:0;padding:0;border:1px solid #888;width:12em}}</style>
</head><body><h1>{title}</h1>
{body}
</body></html>"""

# A magnifier drawn inline: the page loads nothing from anywhere.
_ICON = (
    "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' width='16' height='16'>"
    "<circle cx='6' cy='6' r='5' fill='none' stroke='black'/></svg>"
)


def _tables() -> str:
    # The sidebar's "Results" region comes first in the document, so {role: table} and even
    # {role: table, within: {role: region, name: Results}} find the sidebar's table.
    def region(member: str, status: str) -> str:
        return (
            '<section aria-label="Results"><table>'
            "<tr><th>Member ID</th><th>Status</th></tr>"
            f"<tr><td>{member}</td><td>{status}</td></tr></table></section>"
        )

    return (
        f'<aside aria-label="Recent searches">{region("W999999999", "Old search")}</aside>'
        f"<main>{region('W100000001', 'Current')}</main>"
    )


def _delayed() -> str:
    # Content that appears only after ?delay_s= (default 1.5) seconds, as results behind a
    # spinner do; ?alert= shows that alert instead of the results.
    delay_ms = int(min(max(request.args.get("delay_s", 1.5, type=float) or 0, 0), 30) * 1000)
    alert = json.dumps(request.args.get("alert", "")).replace("<", "\\u003c")
    return f"""<p role="status">Searching…</p><div id="out"></div>
<script>
setTimeout(() => {{
  const out = document.getElementById('out');
  const alert = {alert};
  document.querySelector('[role=status]').textContent = 'Search finished';
  if (alert) {{
    const p = document.createElement('p');
    p.setAttribute('role', 'alert');
    p.textContent = alert;
    out.append(p);
    return;
  }}
  const list = document.createElement('ul');
  list.setAttribute('aria-label', 'Claims found');
  for (const c of ['CLM-1', 'CLM-2', 'CLM-3']) {{
    const li = document.createElement('li');
    li.textContent = c;
    list.append(li);
  }}
  out.append(list);
}}, {delay_ms});
</script>"""


def _fields() -> str:
    # One field per way of naming it, and not one <label> with text among them.
    return f"""<form>
<label for="f-search"><img src="{_ICON}" alt="Search"></label><input id="f-search" type="search">
<span class="field-label">Member ID</span><input aria-label="Member ID">
<span class="field-label" id="grp">Group number</span><input aria-labelledby="grp">
<input placeholder="Claim number">
<input title="Provider NPI">
</form>"""


def _case() -> str:
    return """<p>User opsadmin exists.</p>
<p>Account status: Active</p>"""


def _dropdowns() -> str:
    # A native <select> and a custom one (a button with role=combobox and a role=listbox),
    # plus a field in an open shadow root.
    return """<form>
<label for="d-payer">Payer</label>
<select id="d-payer"><option value="">Select a payer</option>
<option value="sh">Sandbox Health</option><option value="am">Acme Mutual</option></select>
<span class="field-label" id="d-plan-label">Plan</span>
<button type="button" role="combobox" aria-haspopup="listbox" aria-expanded="false"
  aria-labelledby="d-plan-label" aria-controls="d-plans">Choose a plan</button>
<ul role="listbox" id="d-plans" aria-labelledby="d-plan-label" hidden>
<li role="option" aria-selected="false">Gold PPO</li>
<li role="option" aria-selected="false">Silver HMO</li>
<li role="option" aria-selected="false">Bronze EPO</li></ul>
<lab-note></lab-note>
</form>
<script>
const combo = document.querySelector('[role=combobox]');
const list = document.getElementById('d-plans');
combo.addEventListener('click', () => {
  list.hidden = !list.hidden;
  combo.setAttribute('aria-expanded', String(!list.hidden));
});
list.querySelectorAll('[role=option]').forEach(o => o.addEventListener('click', () => {
  list.querySelectorAll('[role=option]').forEach(x =>
    x.setAttribute('aria-selected', String(x === o)));
  combo.textContent = o.textContent;
  list.hidden = true;
  combo.setAttribute('aria-expanded', 'false');
}));
customElements.define('lab-note', class extends HTMLElement {
  constructor() {
    super();
    this.attachShadow({mode: 'open'}).innerHTML =
      '<label for="n">Note</label><input id="n"><p>Inside the shadow root</p>';
  }
});
</script>"""


def _late_submit() -> str:
    # A portal that checks a form by script before sending it: the click only starts a timer,
    # and the page navigates on its own a moment later (?after_ms=, default 200). With ?auto=1
    # the page sends the form by itself once loaded, as a single sign-on page that posts itself
    # on to the next site does.
    after_ms = min(max(request.args.get("after_ms", 200, type=int) or 0, 0), 5000)
    sent = '<p role="status">The form was sent.</p>' if request.args.get("sent") else ""
    auto = "form.submit();" if request.args.get("auto") and not sent else ""
    action = url_for("lab.late_submit_sent")
    return f"""{sent}<form method="post" action="{action}">
<button type="submit">Continue</button></form>
<script>
const form = document.querySelector('form');
form.addEventListener('submit', event => {{
  if (!event.isTrusted) return;
  event.preventDefault();
  setTimeout(() => event.target.submit(), {after_ms});
}});
{auto}
</script>"""


_PAGES = {
    "tables": ("Two tables", _tables),
    "delayed": ("Late results", _delayed),
    "fields": ("Fields without label text", _fields),
    "case": ("Letter case", _case),
    "dropdowns": ("Dropdowns", _dropdowns),
    "late-submit": ("Late submit", _late_submit),
}
# How long a lab page may be asked to take before it answers.
_MAX_ANSWER_AFTER_S = 5.0


@bp.get("/<name>")
def page(name: str) -> Any:
    if name not in _PAGES:
        abort(404)
    wait = request.args.get("answer_after_s", 0.0, type=float) or 0.0
    time.sleep(min(max(wait, 0.0), _MAX_ANSWER_AFTER_S) if math.isfinite(wait) else 0.0)
    title, body = _PAGES[name]
    html = _PAGE.format(title=escape(title), body=body())
    return html, 200, {"Content-Type": "text/html; charset=utf-8"}


@bp.post("/late-submit")
def late_submit_sent() -> Any:
    return redirect(url_for("lab.page", name="late-submit", sent=1))
