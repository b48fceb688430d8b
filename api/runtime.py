"""Access to the process runtime from request handlers."""

from __future__ import annotations

import time

from flask import current_app, g

from shared.lookup import Lookups
from shared.runtime import Runtime
from shared.ssrf import Resolver, check_portal_url


def runtime() -> Runtime:
    return current_app.extensions["understudy"]


def request_resolver() -> Resolver:
    """What looks up the names this request checks (a webhook URL, a portal's address and its
    origins): all of them within one ``LOOKUP_TIMEOUT_S`` from the first, so a client's names
    whose DNS hangs cannot hold an API thread for longer, as the caller's account's (its
    lookups still waiting hold at most their share of the threads)."""
    if "resolver" not in g:
        lookups: Lookups = current_app.extensions["understudy.lookups"]
        deadline = time.monotonic() + runtime().settings.lookup_timeout_s
        g.resolver = lookups.until(deadline, owner=g.get("account_id"))
    return g.resolver


def check_portal_address(url: str) -> None:
    """Raise :class:`shared.ssrf.UrlRefused` unless the agent may browse ``url``: the
    operator's ``PORTAL_ALLOW_PRIVATE``, names looked up with :func:`request_resolver`."""
    check_portal_url(
        url, allow_private=runtime().settings.portal_allow_private, resolver=request_resolver()
    )
