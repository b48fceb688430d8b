"""Portal outages: an account's tasks wait out a portal that is down, instead of failing.

When a task's run ends because the portal failed before the task's own steps (it could not be
reached, answered 5xx or showed an error page while signing in or in the profile's prelude,
after the worker's own retries), the account's portal is marked failing here, and the task
waits (``waiting_for_portal``) with no message. The account's other tasks on the portal that a
worker takes meanwhile wait too, without opening a browser. The scheduler sends one of them, the
probe, when the outage's next probe is due (``PORTAL_PROBE_AFTER_S``, doubling up to ten
minutes). The first run that gets past the sign-in ends the outage and sends every waiting task;
a probe that fails again puts the next probe further off. A task that has waited
``PORTAL_OUTAGE_WAIT_S`` in all ends ``failed``, as it did at once before.

An outage belongs to one account's portal: one tenant's SOP or portal address can never hold up
another tenant's tasks. Every change is made under the lock of the account's portal
(:func:`shared.tasks.lock_portal`), the one the session count takes.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from shared.db import Conn, fetch_one
from shared.tasks import (
    TASK_WAITING_FOR_PORTAL,
    TaskStatus,
    enqueue_event,
    finish_task,
    iso,
    lock_portal,
    park,
    unpark,
)

MAX_PROBE_INTERVAL_S = 600.0


class OutageCause(StrEnum):
    """Why the portal is waited on: what operators need to tell apart (``/metrics``)."""

    DOWN = "down"  # unreachable, a 5xx answer or an error page: the payer's side
    # It refuses the sign-in while the user is signed in elsewhere (the profile's
    # ``sign_in.in_use``): a person of the clinic, or a browser that did not sign out.
    SIGNED_IN_ELSEWHERE = "signed_in_elsewhere"


def hold_for_outage(conn: Conn, claimed: dict, portal: str, *, worker: str) -> str | None:
    """At the start of a run: None when the task may run (no outage, or it is the outage's
    probe); else the task now waits for the portal, and this is its note. Its claim is undone
    (:func:`shared.tasks.park`)."""
    lock_portal(conn, claimed["account_id"], portal)
    outage = conn.execute(
        "SELECT since, error, next_probe_at, probe_task_id FROM portal_outages"
        " WHERE account_id = %s AND portal = %s",
        (claimed["account_id"], portal),
    ).fetchone()
    if outage is None or outage["probe_task_id"] == claimed["id"]:
        return None
    note = _waiting_note(portal, outage["since"], outage["error"], outage["next_probe_at"])
    if not park(conn, claimed["id"], TaskStatus.WAITING_FOR_PORTAL, note, worker):
        return None
    first = fetch_one(
        conn,
        "UPDATE tasks SET portal_down_since = coalesce(portal_down_since, now()) WHERE id = %s"
        " RETURNING portal_down_since = now() AS first",
        (claimed["id"],),
    )["first"]
    if first:
        enqueue_event(conn, claimed["id"], claimed["account_id"], TASK_WAITING_FOR_PORTAL)
    return note


def portal_failed(
    conn: Conn,
    task_id: int,
    account_id: int,
    portal: str,
    error: str,
    *,
    worker: str,
    wait_s: float,
    probe_after_s: float,
    cause: OutageCause = OutageCause.DOWN,
) -> str | None:
    """A run ended because the portal failed before the task's own steps: open the account's
    outage on the portal (or put its next probe further off, with this latest ``cause``), and
    make the task wait for it.

    Returns the task's note, or None when it may wait no longer (``wait_s`` since it first
    waited for the portal): the caller then fails it as a portal error.
    """
    lock_portal(conn, account_id, portal)
    outage = fetch_one(
        conn,
        """
        INSERT INTO portal_outages AS o (account_id, portal, error, cause, next_probe_at)
        VALUES (%(account)s, %(portal)s, %(error)s, %(cause)s,
                now() + make_interval(secs => %(first)s))
        -- Only the probe's failure puts the next probe further off: tasks that were already
        -- running when the portal went down fail into the same outage as they come.
        ON CONFLICT (account_id, portal) DO UPDATE
           SET error = excluded.error, cause = excluded.cause,
               -- A new cause is a new wait for operators (the alerts time each cause apart).
               since = CASE WHEN o.cause = excluded.cause THEN o.since ELSE now() END,
               probes = o.probes + (o.probe_task_id IS NOT DISTINCT FROM %(task)s)::int,
               next_probe_at = CASE WHEN o.probe_task_id IS NOT DISTINCT FROM %(task)s
                   THEN now() + make_interval(
                       secs => least(%(first)s * 2 ^ (o.probes + 1), %(max)s))
                   ELSE o.next_probe_at END,
               probe_task_id = CASE WHEN o.probe_task_id IS NOT DISTINCT FROM %(task)s
                   THEN NULL ELSE o.probe_task_id END
        RETURNING since, error, next_probe_at
        """,
        {
            "task": task_id,
            "account": account_id,
            "portal": portal,
            "error": error,
            "cause": str(cause),
            "first": probe_after_s,
            "max": max(MAX_PROBE_INTERVAL_S, probe_after_s),
        },
    )
    note = _waiting_note(portal, outage["since"], outage["error"], outage["next_probe_at"])
    waiting = conn.execute(
        """
        UPDATE tasks
           SET status = 'waiting_for_portal', claimed_by = NULL, lease_expires_at = NULL,
               enqueued_at = NULL, portal_down_since = coalesce(portal_down_since, now()),
               -- The outage's probes, notes and end find its waiters by this: a portal
               -- registered without a profile has not set it yet.
               profile_portal = coalesce(profile_portal, %s),
               notes = %s, updated_at = now()
         WHERE id = %s AND claimed_by = %s AND status IN ('running', 'waiting_for_input')
           AND cancel_requested_at IS NULL
           AND coalesce(portal_down_since, now()) > now() - make_interval(secs => %s)
        RETURNING portal_down_since = now() AS first
        """,
        (portal, note, task_id, worker, wait_s),
    ).fetchone()
    if waiting and waiting["first"]:
        # The opt-in event, once per wait: not again when a probe finds the portal still down.
        enqueue_event(conn, task_id, account_id, TASK_WAITING_FOR_PORTAL)
    # Every task waiting for the outage says when the next try is.
    conn.execute(
        """
        UPDATE tasks SET notes = %s
         WHERE account_id = %s AND profile_portal = %s AND status = 'waiting_for_portal'
        """,
        (note, account_id, portal),
    )
    return note if waiting else None


def portal_answered(conn: Conn, account_id: int, portal: str) -> list[int]:
    """A run got past the portal's sign-in: end the account's outage on it, if any. The tasks
    that waited for it go back in line; the caller sends them after the commit."""
    lock_portal(conn, account_id, portal)
    ended = conn.execute(
        "DELETE FROM portal_outages WHERE account_id = %s AND portal = %s RETURNING since",
        (account_id, portal),
    ).fetchone()
    if ended is None:
        return []
    woken = unpark(conn, account_id, portal, TaskStatus.WAITING_FOR_PORTAL, None)
    # Their wait is over: a later outage gives them PORTAL_OUTAGE_WAIT_S afresh.
    conn.execute("UPDATE tasks SET portal_down_since = NULL WHERE id = ANY(%s)", (woken,))
    return woken


def probe_now(conn: Conn, account_id: int, portal: str) -> None:
    """The account changed what its runs on ``portal`` use (its address, profile or login):
    an outage's next probe is due now, not after its backoff of up to ten minutes, so a fixed
    address or login is tried at the scheduler's next tick. (One row's time, and nothing it
    waits on: the portal's lock is not needed.)"""
    conn.execute(
        "UPDATE portal_outages SET next_probe_at = now()"
        " WHERE account_id = %s AND portal = %s AND next_probe_at > now()",
        (account_id, portal),
    )


# An outage (``o``) whose next probe is due, and whose last probe is not on its way any more.
_PROBE_DUE = """
    o.next_probe_at <= now()
    AND NOT EXISTS (
        SELECT FROM tasks p WHERE p.id = o.probe_task_id
           AND p.status IN ('pending', 'dispatching', 'running', 'waiting_for_input'))
"""


def due_probes(conn: Conn, limit: int = 100) -> list[int]:
    """For the scheduler: each outage whose next probe is due, and whose last probe is not on
    its way any more, sends its oldest waiting task as the probe. An outage nobody waits for
    any more (canceled, given up) ends: the next task finds out for itself."""
    due = conn.execute(
        f"SELECT account_id, portal FROM portal_outages o WHERE {_PROBE_DUE}"
        " ORDER BY next_probe_at LIMIT %s",
        (limit,),
    ).fetchall()
    probes = []
    for outage in due:
        account_id, portal = outage["account_id"], outage["portal"]
        lock_portal(conn, account_id, portal)
        if not conn.execute(
            f"SELECT 1 AS due FROM portal_outages o"
            f" WHERE account_id = %s AND portal = %s AND {_PROBE_DUE}",
            (account_id, portal),
        ).fetchone():
            continue  # another scheduler sent its probe meanwhile
        # The probe keeps portal_down_since: its own wait goes on until the outage ends.
        probe = unpark(conn, account_id, portal, TaskStatus.WAITING_FOR_PORTAL, 1)
        if not probe:
            conn.execute(
                "DELETE FROM portal_outages WHERE account_id = %s AND portal = %s",
                (account_id, portal),
            )
            continue
        conn.execute(
            "UPDATE portal_outages SET probe_task_id = %s WHERE account_id = %s AND portal = %s",
            (probe[0], account_id, portal),
        )
        probes += probe
    return probes


def give_up_waiting(conn: Conn, wait_s: float, limit: int = 100) -> int:
    """For the scheduler: tasks that waited ``wait_s`` for their portal end ``failed``, saying
    since when and with what the portal failed. Returns how many."""
    rows = conn.execute(
        """
        SELECT t.id, t.portal_down_since, t.profile_portal, o.error FROM tasks t
          LEFT JOIN portal_outages o
            ON o.account_id = t.account_id AND o.portal = t.profile_portal
         WHERE t.status = 'waiting_for_portal'
           AND t.portal_down_since <= now() - make_interval(secs => %s)
         ORDER BY t.id LIMIT %s
         FOR UPDATE OF t SKIP LOCKED
        """,
        (wait_s, limit),
    ).fetchall()
    for row in rows:
        error = f": {row['error']}" if row["error"] else ""
        note = (
            f"Portal error: the portal '{row['profile_portal']}' was still failing after the task"
            f" waited for it since {iso(row['portal_down_since'])} (PORTAL_OUTAGE_WAIT_S){error}"
        )
        finish_task(conn, row["id"], TaskStatus.FAILED, note)
    return len(rows)


def outage_state(conn: Conn) -> dict[OutageCause, tuple[int, float]]:
    """For /metrics, by cause (every cause, 0 if none): the accounts' portals waited on now,
    and seconds since the oldest of them began."""
    rows = conn.execute(
        "SELECT cause, count(*) AS open, EXTRACT(EPOCH FROM now() - min(since)) AS oldest_s"
        " FROM portal_outages GROUP BY cause"
    ).fetchall()
    found = {row["cause"]: (int(row["open"]), float(row["oldest_s"])) for row in rows}
    return {cause: found.get(str(cause), (0, 0.0)) for cause in OutageCause}


def _waiting_note(portal: str, since: datetime, error: str, next_probe_at: datetime) -> str:
    return (
        f"Waiting for portal '{portal}', failing since {iso(since)}: {error}. It runs when the"
        f" portal answers again; the next try is at {iso(next_probe_at)}."
    )
