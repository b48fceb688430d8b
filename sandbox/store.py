"""In-memory state of one sandbox app: fault switches, sessions, submissions and counters.

Every create_app() call gets its own Store (kept in ``app.extensions``), so tests are isolated.
The app runs threaded, so every read and write goes through one lock.
"""

from __future__ import annotations

import copy
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import current_app

from . import faults as faults_mod
from .records import SEED_CLAIMS, Claim

# Eligibility results are kept only so the spinner page can fetch them; cap the backlog.
_MAX_RESULTS = 500


@dataclass
class PortalSession:
    """Server-side state of one browser session (the cookie only carries ``sid``)."""

    sid: str
    username: str
    mfa_ok: bool
    next_url: str
    last_seen: float
    requests_since_arm: int = 0  # counted page requests since expire_after_requests was set
    payer: str | None = None
    show_modal: bool = False
    claim_draft: dict[str, Any] = field(default_factory=dict)
    ended_elsewhere: bool = False  # another sign-in of the same user ended it (single_session)


class Store:
    """Thread-safe state of one app instance."""

    def __init__(
        self,
        initial_faults: Mapping[str, Any],
        clock: Callable[[], float] | None = None,
        seed: int | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._initial = dict(initial_faults)
        self._clock = clock or time.monotonic
        self._rng = random.Random(seed)
        self._reset_locked()

    # -- lifecycle -------------------------------------------------------------------------

    def _reset_locked(self) -> None:
        self._faults = dict(self._initial)
        self._sessions: dict[str, PortalSession] = {}
        self._claims: list[dict[str, Any]] = []
        self._prior_auths: list[dict[str, Any]] = []
        self._appeals: list[dict[str, Any]] = []
        self._users: list[dict[str, Any]] = []
        self._staff: list[dict[str, Any]] = []
        self._eligibility: dict[str, dict[str, Any]] = {}
        self._login_attempts: Counter[str] = Counter()
        self._mfa_attempts: Counter[str] = Counter()
        self._refs: set[str] = set()
        # The single-page portal (sandbox/spa.py): its sessions (sid -> [email, last_seen]),
        # the last passcode "emailed" to each address, and its lookup results for the frame.
        self._spa_sessions: dict[str, list[Any]] = {}
        self._spa_outbox: dict[str, str] = {}
        self._spa_results: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        """Restore the start-up fault switches and forget sessions, submissions and counters."""
        with self._lock:
            self._reset_locked()

    # -- fault switches --------------------------------------------------------------------

    def faults(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._faults)

    def set_faults(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply validated switches; setting expire_after_requests re-arms every session."""
        with self._lock:
            self._faults.update(changes)
            if "expire_after_requests" in changes:
                for s in self._sessions.values():
                    s.requests_since_arm = 0
            return dict(self._faults)

    def chance(self, p: float) -> bool:
        with self._lock:
            return self._rng.random() < p

    # -- sessions --------------------------------------------------------------------------

    def create_session(
        self, username: str, *, mfa_ok: bool, next_url: str, payer: str | None = None
    ) -> PortalSession | None:
        """A new session; with ``single_session`` on, the user's other sessions end with it.
        With ``single_session: "refuse"``, None while the user holds another one
        (:meth:`signed_in_elsewhere`): the sign-in is refused."""
        with self._lock:
            policy = self._faults["single_session"]
            if policy == "refuse" and self.signed_in_elsewhere(username):
                return None
            if policy is True:
                for other in self._sessions.values():
                    if other.username == username:
                        other.ended_elsewhere = True
            sid = secrets.token_urlsafe(16)
            s = PortalSession(sid, username, mfa_ok, next_url, last_seen=self._clock(), payer=payer)
            self._sessions[sid] = s
            return s

    def touch_session(
        self, sid: str, *, count: bool
    ) -> tuple[PortalSession | None, PortalSession | None]:
        """Mark a session used; returns ``(live, None)``, ``(None, expired)`` or ``(None, None)``.

        Expiry is decided here, server side: idle longer than ``session_ttl_s``, (for counted
        page requests) ``expire_after_requests`` requests served since the switch was set, or
        ended by the same user signing in elsewhere. An expired session is removed and handed
        back so its payer can be carried over.
        """
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                return None, None
            limit = self._faults["expire_after_requests"]
            now = self._clock()
            if (
                s.ended_elsewhere
                or now - s.last_seen > self._faults["session_ttl_s"]
                or (count and s.mfa_ok and limit is not None and s.requests_since_arm >= limit)
            ):
                del self._sessions[sid]
                return None, s
            s.last_seen = now
            if count and s.mfa_ok:
                s.requests_since_arm += 1
            return s, None

    def signed_in_elsewhere(self, username: str, but: str | None = None) -> bool:
        """Whether the user holds a signed-in session (its code entered, not idle past
        ``session_ttl_s``) other than ``but``: what ``single_session: "refuse"`` refuses on."""
        with self._lock:
            now = self._clock()
            return any(
                s.username == username and s.sid != but and s.mfa_ok and not s.ended_elsewhere
                and now - s.last_seen <= self._faults["session_ttl_s"]
                for s in self._sessions.values()
            )  # fmt: skip

    def update_session(self, sid: str, **changes: Any) -> None:
        """Change fields of a session under the lock (no-op if it is gone)."""
        with self._lock:
            s = self._sessions.get(sid)
            if s is not None:
                for key, value in changes.items():
                    setattr(s, key, value)

    def drop_session(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    # -- counters --------------------------------------------------------------------------

    def count_login(self, username: str) -> None:
        with self._lock:
            self._login_attempts[username] += 1

    def count_mfa(self, username: str) -> None:
        with self._lock:
            self._mfa_attempts[username] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "login_attempts": dict(self._login_attempts),
                "mfa_attempts": dict(self._mfa_attempts),
            }

    # -- references ------------------------------------------------------------------------

    def new_reference(self, prefix: str) -> str:
        """A fresh ``PREFIX-`` + 8 digits reference, unique within this store."""
        with self._lock:
            while True:
                ref = f"{prefix}-{self._rng.randrange(10_000_000, 100_000_000)}"
                if ref not in self._refs:
                    self._refs.add(ref)
                    return ref

    # -- eligibility results (fetched by the spinner page) -----------------------------------

    def save_eligibility(self, result: dict[str, Any]) -> str:
        with self._lock:
            token = secrets.token_urlsafe(12)
            self._eligibility[token] = result
            while len(self._eligibility) > _MAX_RESULTS:
                del self._eligibility[next(iter(self._eligibility))]
            return token

    def eligibility(self, token: str) -> dict[str, Any] | None:
        with self._lock:
            result = self._eligibility.get(token)
            return copy.deepcopy(result) if result is not None else None

    # -- the single-page portal -------------------------------------------------------------

    def spa_send_passcode(self, email: str) -> str:
        """A fresh 6-digit passcode for ``email``, kept as the one its "email" holds."""
        with self._lock:
            code = f"{self._rng.randrange(1_000_000):06d}"
            self._spa_outbox[email] = code
            return code

    def spa_take_passcode(self, email: str, code: str) -> bool:
        """True (once) if ``code`` is the passcode last sent to ``email``."""
        with self._lock:
            if code and self._spa_outbox.get(email) == code:
                del self._spa_outbox[email]
                return True
            return False

    def spa_outbox(self) -> dict[str, str]:
        with self._lock:
            return dict(self._spa_outbox)

    def spa_create_session(self, email: str) -> str:
        with self._lock:
            sid = secrets.token_urlsafe(16)
            self._spa_sessions[sid] = [email, self._clock()]
            return sid

    def spa_session(self, sid: str) -> str | None:
        """The email of a live session (touching it), or None; idle ones expire."""
        with self._lock:
            held = self._spa_sessions.get(sid)
            if held is None:
                return None
            now = self._clock()
            if now - held[1] > self._faults["session_ttl_s"]:
                del self._spa_sessions[sid]
                return None
            held[1] = now
            return str(held[0])

    def spa_drop_session(self, sid: str) -> None:
        with self._lock:
            self._spa_sessions.pop(sid, None)

    def spa_expire_sessions(self) -> int:
        """End every session of the single-page portal (a test's expired session)."""
        with self._lock:
            count = len(self._spa_sessions)
            self._spa_sessions.clear()
            return count

    def spa_save_result(self, result: dict[str, Any]) -> str:
        with self._lock:
            token = secrets.token_urlsafe(12)
            self._spa_results[token] = result
            while len(self._spa_results) > _MAX_RESULTS:
                del self._spa_results[next(iter(self._spa_results))]
            return token

    def spa_result(self, token: str) -> dict[str, Any] | None:
        with self._lock:
            result = self._spa_results.get(token)
            return copy.deepcopy(result) if result is not None else None

    # -- submissions -----------------------------------------------------------------------

    def _add(self, bucket: list[dict[str, Any]], record: dict[str, Any]) -> dict[str, Any]:
        record = {**record, "submitted_at": datetime.now().isoformat(timespec="seconds")}
        with self._lock:
            bucket.append(record)
            delay = self._faults["slow_submit_s"]
        # A payer that records a submission and is slow to confirm it: the window in which a
        # client may die without knowing whether it submitted.
        if delay:
            time.sleep(delay)
        return copy.deepcopy(record)

    def add_claim(self, record: dict[str, Any]) -> dict[str, Any]:
        return self._add(self._claims, record)

    def add_prior_auth(self, record: dict[str, Any]) -> dict[str, Any]:
        return self._add(self._prior_auths, record)

    def add_appeal(self, record: dict[str, Any]) -> dict[str, Any]:
        return self._add(self._appeals, record)

    def add_user(self, record: dict[str, Any]) -> dict[str, Any]:
        return self._add(self._users, record)

    def add_staff(self, record: dict[str, Any]) -> dict[str, Any]:
        return self._add(self._staff, record)

    def submissions(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return copy.deepcopy(
                {
                    "claims": self._claims,
                    "prior_auths": self._prior_auths,
                    "appeals": self._appeals,
                    "users": self._users,
                    "staff": self._staff,
                }
            )

    def find_submission(self, kind: str, reference: str) -> dict[str, Any] | None:
        """A submitted claim / prior auth / appeal by its reference."""
        for item in self.submissions()[kind]:
            if item.get("reference") == reference:
                return item
        return None

    def all_claims(self) -> list[Claim]:
        """Claims as claim status knows them: accepted submissions (newest first), then seeded."""
        with self._lock:
            received = [
                Claim(
                    c["reference"],
                    c["member_id"],
                    datetime.strptime(c["service_lines"][0]["service_date"], "%m/%d/%Y").date(),
                    "Received",
                    Decimal(c["total_billed"]),
                    Decimal("0.00"),
                    "Claim received",
                )
                for c in reversed(self._claims)
                if c["status"] == "Received"
            ]
        return received + sorted(SEED_CLAIMS, key=lambda c: c.service_date, reverse=True)


def get_store() -> Store:
    """The Store of the current app."""
    return current_app.extensions["sandbox_store"]


def initial_faults(config: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults overridden by whatever switches create_app was given."""
    given = {k: v for k, v in config.items() if k in faults_mod.DEFAULTS}
    return {**faults_mod.DEFAULTS, **faults_mod.validate(given)}
