"""PUT /sops and POST /sops/validate refuse what they can already see leaving the portal."""

from __future__ import annotations

import pytest

from shared.sop.library import builtin_sop_text

BUILTIN = builtin_sop_text("check_eligibility")
YAML = {"Content-Type": "application/yaml"}
ANCHOR = "  - click: {button: Search}"


def _with_goto(url: str, text: str = BUILTIN) -> tuple[str, int]:
    """The built-in SOP with a goto step inserted before the search click, and its line."""
    line = text.splitlines().index(ANCHOR) + 1
    return text.replace(ANCHOR, f'  - goto: "{url}"\n{ANCHOR}'), line


def _sops(runtime) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT count(*) AS n FROM sops").fetchone()["n"]


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "javascript:alert(document.cookie)",
        "data:text/html,<h1>x</h1>",
        "chrome://settings",
        "http://127.0.0.1:6379/",
        "https://elsewhere.test/steal",
    ],
)
@pytest.mark.parametrize("endpoint", ["/sops/check_eligibility", "/sops/validate"])
def test_a_goto_off_the_portal_is_422_naming_the_line(client, account, runtime, url, endpoint):
    text, line = _with_goto(url)
    method = client.put if endpoint.endswith("eligibility") else client.post
    response = method(endpoint, data=text.encode(), headers={**account.headers, **YAML})
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "validation_failed"
    [problem] = [d for d in error["details"] if d["path"].endswith("goto")]
    assert problem["line"] == line
    assert url.split(":")[0] in problem["message"] or "origins" in problem["message"]
    assert _sops(runtime) == 0


def test_a_goto_to_the_portal_itself_or_a_declared_origin_is_accepted(client, account, runtime):
    # the sandbox portal's own origin, absolute
    text, _ = _with_goto(f"{runtime.settings.sandbox_url}/eligibility")
    response = client.put(
        "/sops/check_eligibility", data=text.encode(), headers={**account.headers, **YAML}
    )
    assert response.status_code == 201, response.get_json()

    # an account's portal and the origin it declared
    client.put(
        "/portals/acme",
        json={"base_url": "https://portal.acme.test/app", "allowed_origins": ["https://sso.test"]},
        headers=account.headers,
    )
    acme = BUILTIN.replace("portal:\n  name: sandbox", "portal:\n  name: acme")
    for url, status in (("https://sso.test/login", 200), ("https://other.test/", 422)):
        text, _ = _with_goto(url, acme)
        response = client.post(
            "/sops/validate", data=text.encode(), headers={**account.headers, **YAML}
        )
        assert response.status_code == status, (url, response.get_json())
