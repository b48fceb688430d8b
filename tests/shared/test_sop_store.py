"""The parsed-SOP cache: each version's text is parsed once, and the cache stays bounded."""

from __future__ import annotations

import hashlib

from shared.sop.library import builtin_sop_text
from shared.sop.store import ParsedSops, Refused, active_sop, sop_by_id

TEXT = builtin_sop_text("check_eligibility")
DIGEST = hashlib.sha256(TEXT.encode()).hexdigest()


def test_a_version_is_parsed_once_and_answered_from_the_cache():
    # given an empty cache and a body reader that counts its calls
    cache, reads = ParsedSops(), []

    def body() -> str:
        reads.append(1)
        return TEXT

    # when the same digest is asked for three times
    results = [cache.get(None, DIGEST, body) for _ in range(3)]
    # then the body was read (and parsed) once, and every answer is the same parsed SOP
    assert len(reads) == 1
    assert results[0][0] is results[1][0] is results[2][0]
    assert results[0][0].task_type == "check_eligibility"
    assert results[0][1].startswith(results[0][0].title)


def test_the_cache_keeps_at_most_its_bound_least_recent_first_out():
    cache = ParsedSops(max_entries=2)
    for key in ("a", "b", "c"):
        cache.get(None, key, lambda: TEXT)
    assert len(cache) == 2
    reread = []
    cache.get(None, "a", lambda: reread.append(1) or TEXT)  # "a" went first: read again
    assert reread == [1]


def test_a_full_cache_gives_up_an_entry_of_the_owner_that_holds_the_most():
    # given a cache of four, with one entry of a small owner and three of a big one
    cache = ParsedSops(max_entries=4)
    cache.get(1, "small", lambda: TEXT)
    for key in ("a", "b", "c"):
        cache.get(2, key, lambda: TEXT)
    # when the big owner adds more, and the small one again
    for key in ("d", "e"):
        cache.get(2, key, lambda: TEXT)
    cache.get(1, "small2", lambda: TEXT)
    # then the bound holds, the big owner lost its oldest, and the small one lost nothing
    assert len(cache) == 4
    assert cache.has(1, "small") and cache.has(1, "small2")
    assert [cache.has(2, key) for key in "abcde"] == [False, False, False, True, True]


def test_a_refused_text_is_kept_with_its_problems():
    cache, reads = ParsedSops(), []
    refused = [cache.get(None, "bad", lambda: reads.append(1) or "task_type: [") for _ in range(2)]
    assert len(reads) == 1 and refused[0] is refused[1]
    assert isinstance(refused[0], Refused) and refused[0].err.errors


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
