"""Version history in pages: GET /sops/{type} and GET /portals/{name}/profile show the newest
100 versions, and /versions pages through all of them, newest first."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.sop.library import builtin_sop_text
from tests.api.test_console import make_user, sign_in
from tests.api.test_portal_profiles_api import ACME

YAML = {"Content-Type": "application/yaml"}


@dataclass(frozen=True)
class Document:
    """A versioned document a test stores: where the API has it, and where its rows are."""

    url: str
    text: str
    table: str
    column: str
    name: str


SOP = Document(
    "/sops/check_coverage",
    builtin_sop_text("check_eligibility").replace(
        "task_type: check_eligibility", "task_type: check_coverage"
    ),
    "sops", "task_type", "check_coverage",
)  # fmt: skip
PROFILE = Document("/portals/acme/profile", ACME, "portal_profiles", "portal", "acme")


def _stored(client, account, runtime, document: Document, versions: int = 1) -> None:
    """Store version 1 with a PUT, and 2..``versions`` as copies of it (a PUT each is slow)."""
    put = client.put(document.url, data=document.text, headers={**account.headers, **YAML})
    assert put.status_code == 201, put.get_json()
    table, column = document.table, document.column
    with runtime.pool.connection() as conn:
        conn.execute(
            f"INSERT INTO {table} (account_id, {column}, version, body, digest)"
            f" SELECT account_id, {column}, n, body, digest FROM {table},"
            " generate_series(2, %s) n WHERE account_id = %s AND version = 1",
            (versions, account.id),
        )


def _viewer(runtime, app, account):
    """A console client signed in as a viewer of the account."""
    make_user(runtime, account.id, "v@c.test", "viewer")
    browser = app.test_client()
    sign_in(browser, "v@c.test")
    return browser


def _pages(client, account, url: str, limit: int) -> list[dict]:
    """Every page of a versions list, following next_cursor."""
    pages, cursor = [], None
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(url + query, headers=account.headers)
        assert response.status_code == 200, response.get_json()
        pages.append(response.get_json())
        cursor = pages[-1]["next_cursor"]
        if not pages[-1]["has_more"]:
            assert cursor is None
            return pages


def _error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code


def test_a_custom_type_with_250_versions_shows_100_and_pages_through_all(client, account, runtime):
    # given a custom type with 250 stored versions
    _stored(client, account, runtime, SOP, 250)
    # when the type is read, then its history is the newest 100, and says there are more
    sop = client.get("/sops/check_coverage", headers=account.headers).get_json()
    assert sop["version"] == 250
    assert [h["version"] for h in sop["history"]] == list(range(250, 150, -1))
    assert sop["history_has_more"] is True
    assert set(sop["history"][0]) == {"version", "digest", "created_at"}
    # and /versions pages through all 250, newest first, 100 at a time
    pages = _pages(client, account, "/sops/check_coverage/versions", 100)
    assert [len(p["data"]) for p in pages] == [100, 100, 50]
    versions = [entry["version"] for p in pages for entry in p["data"]]
    assert versions == list(range(250, 0, -1))
    assert pages[0]["data"] == sop["history"]


def test_sop_versions_default_page_is_the_history(client, account, runtime):
    _stored(client, account, runtime, SOP)
    listed = client.get("/sops/check_coverage/versions", headers=account.headers).get_json()
    read = client.get("/sops/check_coverage", headers=account.headers).get_json()
    assert listed == {"data": read["history"], "has_more": False, "next_cursor": None}
    assert read["history_has_more"] is False
    # a built-in type the account never changed has no versions of its own
    builtin = client.get("/sops/check_eligibility/versions", headers=account.headers)
    assert builtin.status_code == 200 and builtin.get_json()["data"] == []


def test_sop_versions_refuse_bad_cursors_limits_and_unknown_types(client, account):
    url = "/sops/check_eligibility/versions"
    _error(client.get(f"{url}?cursor=nonsense", headers=account.headers), 400, "bad_cursor")
    for limit in ("0", "1001", "ten"):
        _error(client.get(f"{url}?limit={limit}", headers=account.headers), 400, "bad_limit")
    assert client.get(f"{url}?limit=1000", headers=account.headers).status_code == 200
    _error(client.get("/sops/check_horoscope/versions", headers=account.headers), 404, "not_found")


def test_a_removed_custom_types_versions_stay_listed(client, account, runtime):
    # given a custom type, then removed (its tasks still name its versions)
    _stored(client, account, runtime, SOP)
    assert client.delete("/sops/check_coverage", headers=account.headers).status_code == 200
    # then GET /sops/{type} is 404, but its versions are listed, like each version is readable
    _error(client.get("/sops/check_coverage", headers=account.headers), 404, "not_found")
    listed = client.get("/sops/check_coverage/versions", headers=account.headers)
    assert [v["version"] for v in listed.get_json()["data"]] == [1]


def test_a_portal_profiles_versions_are_capped_and_paged(client, account, runtime):
    # given a portal profile with 5 stored versions
    _stored(client, account, runtime, PROFILE, 5)
    # then the profile shows all 5 (under the cap) and no more
    profile = client.get("/portals/acme/profile", headers=account.headers).get_json()
    assert [h["version"] for h in profile["history"]] == [5, 4, 3, 2, 1]
    assert profile["history_has_more"] is False
    # and /versions pages through them two at a time, newest first
    pages = _pages(client, account, "/portals/acme/profile/versions", 2)
    assert [[v["version"] for v in p["data"]] for p in pages] == [[5, 4], [3, 2], [1]]
    assert [v for p in pages for v in p["data"]] == profile["history"]


def test_a_portal_profile_with_more_than_100_versions_says_so(client, account, runtime):
    _stored(client, account, runtime, PROFILE, 101)
    profile = client.get("/portals/acme/profile", headers=account.headers).get_json()
    assert len(profile["history"]) == 100 and profile["history"][-1]["version"] == 2
    assert profile["history_has_more"] is True


def test_profile_versions_refuse_bad_cursors_limits_and_unknown_portals(client, account):
    url = "/portals/sandbox/profile/versions"
    sandbox = client.get(url, headers=account.headers)
    assert sandbox.status_code == 200 and sandbox.get_json()["data"] == []
    _error(client.get(f"{url}?cursor=nonsense", headers=account.headers), 400, "bad_cursor")
    _error(client.get(f"{url}?limit=1001", headers=account.headers), 400, "bad_limit")
    _error(
        client.get("/portals/nowhere/profile/versions", headers=account.headers), 404, "not_found"
    )


def test_the_consoles_sop_page_shows_100_versions_and_links_the_older_ones(
    runtime, app, client, account
):
    # given a custom type with 250 versions, and a viewer signed in to the console
    _stored(client, account, runtime, SOP, 250)
    browser = _viewer(runtime, app, account)
    # when the viewer opens the type's page, then it lists versions 250..151 and links older ones
    page = browser.get("/console/sops/check_coverage").text
    assert _listed(page) == list(range(250, 150, -1))
    assert 'href="?before=151" id="older-versions">Older versions' in page
    # and following the links pages through the rest, the last page with no link further
    older = browser.get("/console/sops/check_coverage?before=151").text
    assert _listed(older) == list(range(150, 50, -1)) and "?before=51" in older
    oldest = browser.get("/console/sops/check_coverage?before=51").text
    assert _listed(oldest) == list(range(50, 0, -1)) and "older-versions" not in oldest
    assert browser.get("/console/sops/check_coverage?before=x").status_code == 400


def test_the_consoles_profile_page_pages_its_versions_too(runtime, app, client, account):
    _stored(client, account, runtime, PROFILE, 101)
    browser = _viewer(runtime, app, account)
    page = browser.get("/console/portals/acme/profile").text
    assert _listed(page) == list(range(101, 1, -1)) and "?before=2" in page
    assert _listed(browser.get("/console/portals/acme/profile?before=2").text) == [1]


def _listed(html: str) -> list[int]:
    """The version numbers of a console page's history table, in order."""
    table = html.split('-history">', 1)[1].split("</table>", 1)[0]
    return [int(v) for v in re.findall(r"<tr><td>(?:<a [^>]*>)?(\d+)", table)]
