"""Fault switches: down, slow, alt layout; set by create_app or the admin endpoints."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

import sandbox

from .helpers import read, sign_in, submit

DEFAULTS = {
    "down": False,
    "slow_s": 0.0,
    "slow_page_s": 1.5,
    "slow_submit_s": 0.0,
    "spinner_s": 1.0,
    "session_ttl_s": 900.0,
    "expire_after_requests": None,
    "modal": "random",
    "layout": "default",
    "single_session": False,
}


def test_defaults() -> None:
    client = sandbox.create_app().test_client()
    assert client.get("/__sandbox/faults").get_json() == DEFAULTS


@pytest.mark.parametrize(
    "path", ["/login", "/mfa", "/dashboard", "/eligibility", "/claim-status", "/nope"]
)
def test_down_answers_503_everywhere(client: FlaskClient, path: str) -> None:
    client.post("/__sandbox/faults", json={"down": True})
    page = read(client.get(path))
    assert page.status == 503
    assert page.heading == "Service Unavailable"


def test_down_spares_admin_and_can_be_lifted(make_app: Callable[..., Flask]) -> None:
    client = make_app(down=True).test_client()
    assert client.post("/login", data={}).status_code == 503
    assert client.get("/__sandbox/stats").status_code == 200
    assert client.post("/__sandbox/faults", json={"down": False}).get_json()["down"] is False
    assert client.get("/login").status_code == 200


def test_slow_s_delays_every_page(client: FlaskClient) -> None:
    # A wide gap between slow and quick, so a loaded machine cannot blur the two.
    client.post("/__sandbox/faults", json={"slow_s": 3.0})
    start = time.monotonic()
    assert client.get("/login").status_code == 200
    assert time.monotonic() - start >= 3.0
    start = time.monotonic()
    client.get("/__sandbox/faults")
    assert time.monotonic() - start < 2.0  # admin pages are never slowed


@pytest.mark.parametrize(
    "body",
    [
        {"nope": 1},
        {"down": "yes"},
        {"single_session": 1},
        {"single_session": "sometimes"},
        {"slow_s": -1},
        {"slow_s": True},
        {"modal": "sometimes"},
        {"layout": "weird"},
        {"expire_after_requests": 1.5},
        [1, 2],
    ],
)
def test_bad_fault_switches_are_refused(client: FlaskClient, body: object) -> None:
    resp = client.post("/__sandbox/faults", json=body)
    assert resp.status_code == 400
    assert "error" in resp.get_json()
    assert client.get("/__sandbox/faults").get_json()["modal"] == "never"  # unchanged


def test_create_app_refuses_bad_switches() -> None:
    with pytest.raises(ValueError, match="modal"):
        sandbox.create_app({"modal": "often"})


def test_set_and_reset(make_app: Callable[..., Flask]) -> None:
    client = make_app(spinner_s=0.25).test_client()
    changed = client.post(
        "/__sandbox/faults", json={"layout": "alt", "expire_after_requests": 3}
    ).get_json()
    assert changed["layout"] == "alt" and changed["expire_after_requests"] == 3
    sign_in(client)
    body = client.post("/__sandbox/reset").get_json()
    # Reset returns to the start-up values: the defaults, overridden by create_app's config.
    assert body["faults"]["layout"] == "default"
    assert body["faults"]["expire_after_requests"] is None
    assert body["faults"]["spinner_s"] == 0.25
    assert client.get("/__sandbox/stats").get_json() == {"login_attempts": {}, "mfa_attempts": {}}


def test_apps_are_isolated(make_app: Callable[..., Flask]) -> None:
    one, two = make_app().test_client(), make_app().test_client()
    one.post("/__sandbox/faults", json={"down": True})
    assert two.get("/login").status_code == 200


class TestAltLayout:
    """Same labels and buttons; different order, wrappers, ids and names."""

    @pytest.fixture
    def pair(self, make_app: Callable[..., Flask]) -> tuple[FlaskClient, FlaskClient]:
        default, alt = make_app().test_client(), make_app(layout="alt").test_client()
        sign_in(default)
        sign_in(alt)
        return default, alt

    @pytest.mark.parametrize(
        "path",
        [
            "/eligibility",
            "/claims/new",
            "/prior-auth/new",
            "/appeals/new",
            "/claim-status",
            "/dashboard",
        ],
    )
    def test_same_labels_other_order_names_ids(
        self, pair: tuple[FlaskClient, FlaskClient], path: str
    ) -> None:
        d, a = (read(c.get(path)) for c in pair)
        assert d.heading == a.heading
        assert d.buttons == a.buttons
        assert set(d.r.labels) == set(a.r.labels)
        for label in d.r.labels:
            assert d.name_of(label) != a.name_of(label)
            assert d.id_of(label)[:2] != a.id_of(label)[:2]
        if len(d.r.labels) > 1:
            assert d.label_order() != a.label_order()
        assert 'class="alt-row"' in a.html and 'class="alt-row"' not in d.html

    def test_login_and_flows_work_with_alt_names(self, make_app: Callable[..., Flask]) -> None:
        client = make_app(layout="alt").test_client()
        page = read(client.get("/login"))
        assert page.name_of("Username") == "loginId"
        sign_in(client)  # by label, so through the alt names
        page = read(client.get("/eligibility"))
        data = page.form(
            {
                "Member ID": "W100000001",
                "Patient First Name": "Jane",
                "Patient Last Name": "Doe",
                "Date of Birth": "01/15/1990",
            }
        )
        assert set(data) == {"subscriberId", "ptGiven", "ptFamily", "ptBirthDate"}
        page = read(client.post("/eligibility", data=data, follow_redirects=True))
        assert client.get(page.path + "/data").get_json()["rows"][2] == [
            "Coverage Status",
            "Active",
        ]

        client.get("/claims/new")
        page = read(client.get("/claims/new/step/1"))
        submit(
            client,
            page,
            "/claims/new/step/1",
            {
                "Member ID": "W100000001",
                "Patient First Name": "Jane",
                "Patient Last Name": "Doe",
                "Date of Birth": "01/15/1990",
            },
        )
        submit(
            client,
            read(client.get("/claims/new/step/2")),
            "/claims/new/step/2",
            {"Provider NPI": "1234567890"},
        )
        page = read(client.get("/claims/new/step/3"))
        assert page.name_of("Charge 1") == "chgAmt1"
        assert "svcDt__N__" in page.html  # the added-line template uses alt names too
        data = page.form(
            {
                "Service Date 1": "03/01/2025",
                "CPT Code 1": "99213",
                "ICD-10 Code 1": "J20.9",
                "Charge 1": "100",
            }
        )
        data.update({"svcDt2": "03/02/2025", "procCd2": "99214", "dxCd2": "J20.9", "chgAmt2": "50"})
        page = read(client.post("/claims/new/step/3", data=data, follow_redirects=True))
        assert page.heading == "New Claim — Step 4 of 5: Attachments"
        client.post("/claims/new/step/4")
        page = read(client.post("/claims/new/step/5", follow_redirects=True))
        assert page.heading == "Claim submitted"
        [claim] = client.get("/__sandbox/submissions").get_json()["claims"]
        assert [x["charge"] for x in claim["service_lines"]] == ["100.00", "50.00"]

        page = submit(
            client,
            read(client.get("/claim-status")),
            "/claim-status",
            {"Member ID": "W100000001"},
            method="get",
        )
        assert "Page 1 of 3" in page.html
        assert "subscriberId=W100000001" in page.links["Next page"]

    def test_default_names_still_accepted_in_alt(self, make_app: Callable[..., Flask]) -> None:
        # A page rendered before the switch flipped must still submit fine.
        client = make_app(layout="alt").test_client()
        sign_in(client)
        resp = client.post(
            "/eligibility",
            data={
                "member_id": "W100000001",
                "first_name": "Jane",
                "last_name": "Doe",
                "dob": "01/15/1990",
            },
        )
        assert resp.status_code == 302


def test_slow_submit_records_the_submission_before_it_answers(make_app) -> None:
    # given a payer that is slow to confirm submissions
    app = make_app(slow_submit_s=0.5)
    store_delay = app.test_client().get("/__sandbox/faults").get_json()["slow_submit_s"]
    # then the switch reads back as set (the browser-level effect is covered end to end)
    assert store_delay == 0.5
