"""Helpers for the sandbox portal tests: a label-driven page reader and sign-in steps.

Tests fill forms the way an SOP does - by label text - so they hold for both layouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from shared import totp

TOTP_SECRET = "JBSWY3DPEHPK3PXP"
MFA_USER = ("provider@sandbox", "sandbox-pass-1")
NOMFA_USER = ("nomfa@sandbox", "sandbox-pass-2")


def totp_now() -> str:
    return totp.code(TOTP_SECRET)


class FakeClock:
    """A settable monotonic clock for session expiry tests."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _Reader(HTMLParser):
    """Collects what a person sees: headings, alerts, labelled controls, table cells, links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.h1: list[str] = []
        self.h2: list[str] = []
        self.alerts: list[str] = []
        self.statuses: list[str] = []
        self.buttons: list[str] = []
        self.links: dict[str, str] = {}
        self.captions: list[str] = []
        self.labels: dict[str, str] = {}  # label text -> for
        self.controls: dict[str, dict[str, str]] = {}  # id -> attrs (+ tag)
        self.control_order: list[str] = []
        self.rows: list[list[str]] = []
        self.dialogs = 0
        self._stack: list[tuple[str, str, dict[str, str]]] = []  # (tag, kind, attrs)
        self._text: list[list[str]] = []
        self._in_template = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "template":
            self._in_template += 1
        if self._in_template:
            return
        if a.get("role") == "dialog":
            self.dialogs += 1
        if tag in ("input", "select", "textarea"):
            self.controls[a.get("id", "")] = {**a, "tag": tag}
            self.control_order.append(a.get("id", ""))
        if tag == "tr":
            self.rows.append([])
        if tag == "input":
            return  # void element
        kind = a.get("role", "") if a.get("role") in ("alert", "status") else tag
        self._stack.append((tag, kind, a))
        self._text.append([])

    def handle_endtag(self, tag: str) -> None:
        if tag == "template":
            self._in_template -= 1
            return
        if self._in_template or not self._stack:
            return
        # Pop to the matching tag (HTML here is well formed).
        while self._stack:
            t, kind, a = self._stack.pop()
            text = " ".join("".join(self._text.pop()).split())
            if self._text:
                self._text[-1].append(" " + text + " ")
            if t == tag:
                break
        if kind == "alert":
            self.alerts.append(text)
        elif kind == "status":
            self.statuses.append(text)
        if tag == "h1":
            self.h1.append(text)
        elif tag == "h2":
            self.h2.append(text)
        elif tag == "button":
            self.buttons.append(text)
        elif tag == "label":
            self.labels[text] = a.get("for", "")
        elif tag == "a":
            self.links[text] = a.get("href", "")
        elif tag == "caption":
            self.captions.append(text)
        elif tag in ("th", "td") and self.rows:
            self.rows[-1].append(text)

    def handle_data(self, data: str) -> None:
        if self._text and not self._in_template:
            self._text[-1].append(data)


class Page:
    """A response read like a person reads it."""

    def __init__(self, resp: TestResponse) -> None:
        self.resp = resp
        self.status = resp.status_code
        self.path = resp.request.path
        self.html = resp.get_data(as_text=True)
        r = _Reader()
        r.feed(self.html)
        self.r = r
        self.heading = r.h1[0] if r.h1 else ""
        self.alerts = r.alerts
        self.buttons = r.buttons
        self.links = r.links
        self.rows = [row for row in r.rows if row]
        self.has_dialog = r.dialogs > 0

    def name_of(self, label: str) -> str:
        """The form name of the control labelled ``label``."""
        return self.r.controls[self.r.labels[label]]["name"]

    def id_of(self, label: str) -> str:
        return self.r.labels[label]

    def form(self, by_label: Mapping[str, Any]) -> dict[str, Any]:
        """Form data keyed by the names the page uses for these labels."""
        return {self.name_of(label): v for label, v in by_label.items()}

    def table(self) -> dict[str, str]:
        """Two-column (th, td) rows as a dict."""
        return {row[0]: row[1] for row in self.rows if len(row) == 2}

    def label_order(self) -> list[str]:
        by_id = {v: k for k, v in self.r.labels.items()}
        return [by_id[i] for i in self.r.control_order if i in by_id]


def read(resp: TestResponse) -> Page:
    return Page(resp)


def submit(
    client: FlaskClient,
    page: Page,
    url: str,
    by_label: Mapping[str, Any],
    method: str = "post",
    **kw: Any,
) -> Page:
    """Fill the labelled fields of ``page`` and send them to ``url`` (following redirects)."""
    data = page.form(by_label)
    if method == "get":
        return read(client.get(url, query_string=data, follow_redirects=True, **kw))
    return read(client.post(url, data=data, follow_redirects=True, **kw))


def sign_in(
    client: FlaskClient,
    user: tuple[str, str] = NOMFA_USER,
    next_url: str = "",
    payer: str | None = "Sandbox Health",
) -> Page:
    """Sign in through the pages (MFA when needed) and optionally choose a payer."""
    url = "/login" + ("?" + urlencode({"next": next_url}) if next_url else "")
    page = read(client.get(url))
    page = submit(client, page, url, {"Username": user[0], "Password": user[1]})
    if page.heading == "Two-step verification":
        code = totp_now()
        page = submit(client, page, "/mfa", {"One-time code": code})
    if payer:
        page = choose_payer(client, payer)
    return page


def choose_payer(client: FlaskClient, payer: str = "Sandbox Health") -> Page:
    """Pick a payer on the dashboard by its visible option text."""
    dash = read(client.get("/dashboard"))
    options = {"Sandbox Health": "sandbox-health", "Acme Mutual": "acme-mutual"}
    return submit(client, dash, "/dashboard", {"Payer": options[payer]})
