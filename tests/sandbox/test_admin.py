"""The /__sandbox endpoints: no login needed; submissions and stats as JSON."""

from __future__ import annotations

from flask.testing import FlaskClient

from .helpers import MFA_USER, read, sign_in, submit


def test_admin_needs_no_login(client: FlaskClient) -> None:
    for path in ("/__sandbox/faults", "/__sandbox/submissions", "/__sandbox/stats"):
        assert client.get(path).status_code == 200
    assert client.post("/__sandbox/reset").get_json()["ok"] is True


def test_submissions_start_empty(client: FlaskClient) -> None:
    assert client.get("/__sandbox/submissions").get_json() == {
        "claims": [],
        "prior_auths": [],
        "appeals": [],
        "users": [],
        "staff": [],
    }


def test_stats_count_logins_and_mfa(client: FlaskClient) -> None:
    sign_in(client, MFA_USER, payer=None)
    page = read(client.get("/login"))
    submit(client, page, "/login", {"Username": "nomfa@sandbox", "Password": "wrong"})
    assert client.get("/__sandbox/stats").get_json() == {
        "login_attempts": {"provider@sandbox": 1, "nomfa@sandbox": 1},
        "mfa_attempts": {"provider@sandbox": 1},
    }


def test_reset_clears_submissions(portal: FlaskClient) -> None:
    page = read(portal.get("/appeals/new"))
    submit(
        portal,
        page,
        "/appeals/new",
        {
            "Claim Number": "CLM-DENY-0003",
            "Member ID": "W100000001",
            "Reason for Appeal": "Covered service.",
        },
    )
    assert len(portal.get("/__sandbox/submissions").get_json()["appeals"]) == 1
    portal.post("/__sandbox/reset")
    assert portal.get("/__sandbox/submissions").get_json()["appeals"] == []
