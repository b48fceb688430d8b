"""The parsed-SOP cache: each version's text is parsed once, and the cache stays bounded."""

from __future__ import annotations

import hashlib

from shared.sop.library import builtin_sop_text
from shared.sop.store import ParsedSops, active_sop, sop_by_id

TEXT = builtin_sop_text("check_eligibility")
DIGEST = hashlib.sha256(TEXT.encode()).hexdigest()


def test_a_version_is_parsed_once_and_answered_from_the_cache():
    # given an empty cache and a body reader that counts its calls
    cache, reads = ParsedSops(), []

    def body() -> str:
        reads.append(1)
        return TEXT

    # when the same digest is asked for three times
    results = [cache.get(DIGEST, body) for _ in range(3)]
    # then the body was read (and parsed) once, and every answer is the same parsed SOP
    assert len(reads) == 1
    assert results[0][0] is results[1][0] is results[2][0]
    assert results[0][0].task_type == "check_eligibility"
    assert results[0][1].startswith(results[0][0].title)


def test_the_cache_keeps_at_most_its_bound_least_recent_first_out():
    cache = ParsedSops(max_entries=2)
    for key in ("a", "b", "c"):
        cache.get(key, lambda: TEXT)
    assert len(cache) == 2
    reread = []
    cache.get("a", lambda: reread.append(1) or TEXT)  # "a" went first: read again
    assert reread == [1]


def test_active_and_by_id_give_the_same_stored_builtin_version(runtime, make_account):
    account = make_account()
    with runtime.pool.connection() as conn:
        active = active_sop(conn, account.id, "check_eligibility")
        again = active_sop(conn, account.id, "check_eligibility")
        by_id = sop_by_id(conn, active.id)
        rows = conn.execute("SELECT count(*) AS n FROM sops").fetchone()["n"]
    assert active == again == by_id
    assert active.builtin and active.version == 1 and rows == 1
    assert active.instructions == active.sop.summary()
