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

    # then one deadline covered them all: none of the lookups had ended, and the 422 names each;
    # the names after the deadline were not even asked (a thread each, held as long as the DNS)
    assert dns.ended == 0, "the request waited for lookups to give up"
    assert response.status_code == 422, response.get_json()
    text = str(response.get_json()["error"]["details"])
    assert text.count("did not resolve in time") == 21, text
    assert dns.started == 1


def test_one_accounts_names_that_hang_leave_the_lookup_threads_to_others(
    runtime, account, make_account, dns
):
    # given an API with 8 lookup threads, and an account that set webhook URLs whose names
    # hang, again and again
    client = _client(runtime, lookup_threads=8)
    for n in range(6):
        response = client.put(
            "/webhook-endpoint", json={"url": f"https://h{n}.hangs.test/"},
            headers=account.headers,
        )  # fmt: skip
        assert response.status_code == 422, response.get_json()

    # then its lookups held a quarter of the threads at most: past that its names are not
    # looked up, and it is told why
    assert dns.started == 2
    assert "earlier lookups of this account" in str(response.get_json()["error"]["details"])

    # and another account's name is looked up as ever (refused here for not resolving: no
    # network, but not for want of a thread)
    other = make_account("Other Clinic")
    response = client.put(
        "/webhook-endpoint", json={"url": "https://ok.hangs.test/"}, headers=other.headers
    )
    assert response.status_code == 422, response.get_json()
    assert dns.started == 3


def test_when_every_lookup_thread_is_stuck_the_api_says_it_is_busy(
    runtime, account, make_account, dns
):
    # given an API with 4 lookup threads, all held by four accounts' names that hang
    before = parse(generate_latest(REGISTRY).decode())
    client = _client(runtime, lookup_threads=4)
    for n in range(4):
        client.put(
            "/webhook-endpoint", json={"url": f"https://h{n}.hangs.test/"},
            headers=make_account(f"Clinic {n}").headers,
        )  # fmt: skip

    # when another client sets a webhook URL with a name that would answer
    response = client.put(
        "/webhook-endpoint", json={"url": "https://example.com/hooks"}, headers=account.headers
    )

    # then the shortage is ours: a 503 to retry, not a refusal of the client's name
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert dns.started == 4
    # and operators see it: four lookups running, one refused
    during = parse(generate_latest(REGISTRY).decode())
    assert delta(before, during, "understudy_name_lookups") == 4
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
