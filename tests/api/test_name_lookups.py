"""The names a client sends (a webhook URL, a portal's address and origins) are looked up within
one LOOKUP_TIMEOUT_S per request: a name whose DNS hangs cannot hold an API thread, which every
account's requests share, for as long as the system resolver keeps trying.

The system resolver is stood in for by one that hangs on names under ``hangs.test`` (until the
test releases it, or for ``HANG_S``), and answers every other name as usual.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY, generate_latest

from api import create_app
from tests.dispatcher.support import with_settings
from tests.scrape import delta, parse, value

HANG_S = 3.0


class HangingDns:
    """``socket.getaddrinfo`` that hangs on ``*.hangs.test``; counts the lookups that ended."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.started = 0
        self.ended = 0
        self._real = socket.getaddrinfo

    def __call__(self, host, *args, **kwargs):
        if not str(host).endswith(".hangs.test"):
            return self._real(host, *args, **kwargs)
        self.started += 1
        try:
            self.released.wait(HANG_S)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        finally:
            self.ended += 1


@pytest.fixture
def dns(monkeypatch) -> Iterator[HangingDns]:
    hanging = HangingDns()
    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    yield hanging
    hanging.released.set()


def _client(runtime, **settings):
    """An API that checks every name (as production does), waiting 0.3 s for a request's."""
    changed = {"webhook_allow_private": False, "portal_allow_private": False, **settings}
    app = create_app(runtime=with_settings(runtime, lookup_timeout_s=0.3, **changed))
    app.testing = True
    return app.test_client()


def test_a_webhook_url_whose_name_hangs_is_refused_at_the_deadline(runtime, account, dns):
    # when a client sets a webhook URL whose host's DNS never answers
    response = _client(runtime).put(
        "/webhook-endpoint", json={"url": "https://hooks.hangs.test/in"}, headers=account.headers
    )

    # then the answer came while the lookup still hung: a 422 that says why
    assert dns.ended == 0, "the request waited for the lookup to give up"
    assert response.status_code == 422, response.get_json()
    [problem] = response.get_json()["error"]["details"]
    assert problem["field"] == "url" and "did not resolve in time" in problem["message"]


def test_a_portal_with_many_names_that_hang_waits_once_not_once_per_name(runtime, account, dns):
    # when a client registers a portal whose address and 20 origins all hang
    origins = [f"https://o{n}.hangs.test" for n in range(20)]
    response = _client(runtime).put(
        "/portals/acme",
        json={"base_url": "https://portal.hangs.test", "allowed_origins": origins},
        headers=account.headers,
    )

    # then one deadline covered them all: none of the lookups had ended, and the 422 names each
    assert dns.ended == 0, "the request waited for lookups to give up"
    assert response.status_code == 422, response.get_json()
    text = str(response.get_json()["error"]["details"])
    assert text.count("did not resolve in time") == 21, text


def test_when_every_lookup_thread_is_stuck_the_api_says_it_is_busy(runtime, account, dns):
    # given an API with 2 lookup threads, both held by names that hang
    before = parse(generate_latest(REGISTRY).decode())
    client = _client(runtime, lookup_threads=2)
    for name in ("a", "b"):
        client.put(
            "/webhook-endpoint", json={"url": f"https://{name}.hangs.test/"},
            headers=account.headers,
        )  # fmt: skip

    # when a client sets a webhook URL with a name that would answer
    response = client.put(
        "/webhook-endpoint", json={"url": "https://example.com/hooks"}, headers=account.headers
    )

    # then the shortage is ours: a 503 to retry, not a refusal of the client's name
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert dns.started == 2
    # and operators see it: two lookups running, one refused
    during = parse(generate_latest(REGISTRY).decode())
    assert delta(before, during, "understudy_name_lookups") == 2
    assert delta(before, during, "understudy_name_lookups_refused_total") == 1

    # and once the stuck lookups end, the threads serve again (the name is refused here for
    # what it resolves to, or for not resolving: no network; either way, not busy)
    dns.released.set()
    for _ in range(100):
        now = parse(generate_latest(REGISTRY).decode())
        if value(now, "understudy_name_lookups") <= value(before, "understudy_name_lookups"):
            break
        threading.Event().wait(0.05)
    response = client.put(
        "/webhook-endpoint", json={"url": "https://c.hangs.test/"}, headers=account.headers
    )
    assert response.status_code == 422, response.get_json()
