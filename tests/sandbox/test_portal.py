"""Dashboard, payer choice, navigation and the announcement modal."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .helpers import MFA_USER, choose_payer, read, sign_in

FORM_PAGES = [
    "/eligibility",
    "/claims/new",
    "/prior-auth/new",
    "/prior-auth",
    "/appeals/new",
    "/appeals",
    "/claim-status",
]
NAV = ["Eligibility & Benefits", "Claims", "Prior Authorizations", "Appeals", "Claim Status"]


def test_dashboard_contract(client: FlaskClient) -> None:
    page = sign_in(client, payer=None)
    assert page.heading == "Dashboard"
    assert "Continue" in page.buttons
    assert all(name in page.links for name in NAV)
    select = page.r.controls[page.id_of("Payer")]
    assert select["tag"] == "select"
    assert "Sandbox Health" in page.html and "Acme Mutual" in page.html


@pytest.mark.parametrize("path", FORM_PAGES)
def test_form_pages_need_a_payer(client: FlaskClient, path: str) -> None:
    sign_in(client, payer=None)
    page = read(client.get(path, follow_redirects=True))
    assert page.path == "/dashboard"
    assert page.alerts == ["Choose a payer first."]


def test_choosing_a_payer(client: FlaskClient) -> None:
    sign_in(client, payer=None)
    page = choose_payer(client, "Acme Mutual")
    assert page.path == "/dashboard"
    assert "Current payer: Acme Mutual" in page.html
    for path in FORM_PAGES:
        assert client.get(path).status_code == 200, path


def test_empty_payer_choice_is_refused(client: FlaskClient) -> None:
    page = sign_in(client, payer=None)
    resp = client.post("/dashboard", data={page.name_of("Payer"): ""}, follow_redirects=True)
    assert read(resp).alerts == ["Choose a payer first."]


def test_root_goes_to_dashboard(portal: FlaskClient) -> None:
    assert portal.get("/").location == "/dashboard"


def test_modal_always_covers_pages_until_dismissed(make_app: Callable[..., Flask]) -> None:
    client = make_app(modal="always").test_client()
    page = sign_in(client, MFA_USER, payer=None)
    assert page.has_dialog
    assert page.r.h2 == ["Announcement"]
    assert "Dismiss" in page.buttons
    assert "modal-backdrop" in page.html
    assert read(client.get("/dashboard")).has_dialog  # still there on the next page
    resp = client.post("/announcement/dismiss?back=/dashboard")
    assert resp.location == "/dashboard"
    assert not read(client.get("/dashboard")).has_dialog


def test_modal_dismiss_by_script(make_app: Callable[..., Flask]) -> None:
    client = make_app(modal="always").test_client()
    sign_in(client, payer=None)
    resp = client.post("/announcement/dismiss", headers={"X-Requested-With": "fetch"})
    assert resp.get_json() == {"ok": True}
    assert not read(client.get("/dashboard")).has_dialog


def test_modal_never(make_app: Callable[..., Flask]) -> None:
    client = make_app(modal="never").test_client()
    assert not sign_in(client, payer=None).has_dialog


def test_modal_random_shows_on_some_sign_ins(make_app: Callable[..., Flask]) -> None:
    client = make_app(modal="random").test_client()
    shown = [sign_in(client, payer=None).has_dialog for _ in range(20)]
    assert any(shown) and not all(shown)


def test_unknown_page_is_404(portal: FlaskClient) -> None:
    page = read(portal.get("/nope"))
    assert page.status == 404
    assert page.heading == "Page Not Found"
