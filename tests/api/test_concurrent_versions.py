"""Saves of one SOP, or of one portal's profile, sent at once: each gets its own version.

Found by a concurrency audit: twelve ``PUT /sops/check_claim_status`` with different bodies at
once answered eight 201s and four 500s (``RuntimeError: could not number a new ... version``),
and twelve ``PUT /portals/sandbox/profile`` six 201s and six 500s: each writer read the newest
version, lost the race for the next number to another, and gave up after five rounds.
"""

from __future__ import annotations

import threading

import pytest

from api import create_app
from shared.sop.library import builtin_sop_text
from shared.sop.profile import builtin_profile_text
from tests.dispatcher.support import with_settings

SAVES = 12


def _at_once(app, send) -> list:
    """``SAVES`` calls, each on its own client and thread, released together."""
    barrier = threading.Barrier(SAVES)
    answers: list = [None] * SAVES

    def one(n: int) -> None:
        client = app.test_client()
        barrier.wait()
        answers[n] = send(client, n)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(SAVES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/sops/check_claim_status", builtin_sop_text("check_claim_status")),
        ("/portals/sandbox/profile", builtin_profile_text("sandbox")),
    ],
    ids=["sop", "profile"],
)
def test_saves_sent_at_once_each_get_a_version(runtime, account, path, text):
    # (each parse at once: MAX_PARSES_IN_FLIGHT would answer some of them 429, to send again)
    app = create_app(runtime=with_settings(runtime, max_parses_in_flight=SAVES))
    answers = _at_once(
        app,
        lambda client, n: client.put(
            path,
            data=f"{text}\n# edit {n}\n",
            content_type="application/yaml",
            headers=account.headers,
        ),
    )
    assert [a.status_code for a in answers] == [201] * SAVES
    assert sorted(a.get_json()["version"] for a in answers) == list(range(1, SAVES + 1))
