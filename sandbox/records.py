"""The payer's fixed records: portal users, test members and historical claims.

These are the documented test fixtures of docs/sandbox.md; they never change at run time
(submissions live in the store instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class User:
    """A portal login; ``totp_secret`` set means TOTP MFA is required."""

    username: str
    password: str
    totp_secret: str | None


@dataclass(frozen=True)
class Member:
    """A plan member (patient) as the payer knows them."""

    member_id: str
    first_name: str
    last_name: str
    dob: date
    active: bool
    plan: str
    copay: str
    coverage_end: str
    # Prior-auth outcome for this member: (decision, details).
    prior_auth: tuple[str, str]

    @property
    def patient(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass(frozen=True)
class Claim:
    """A claim as claim status shows it."""

    claim_number: str
    member_id: str
    service_date: date
    status: str
    billed: Decimal
    paid: Decimal
    details: str


USERS: dict[str, User] = {
    "provider@sandbox": User(
        "provider@sandbox",
        "sandbox-pass-1",  # noqa: S106 - documented sandbox credential
        "JBSWY3DPEHPK3PXP",
    ),
    "nomfa@sandbox": User("nomfa@sandbox", "sandbox-pass-2", None),  # noqa: S106
}

# The single-page portal (Care Hub, /hub) signs in by email and a 6-digit passcode: the one it
# last "emailed" (GET /__sandbox/hub/outbox), or, for a user with an authenticator secret, the
# current TOTP code of that secret.
HUB_USERS: dict[str, str | None] = {
    "care@sandbox": "GEZDGNBVGY3TQOJQ",  # documented sandbox secret (base32 of "1234567890")
    "mail@sandbox": None,
}

# Submitting this member id anywhere makes the portal answer HTTP 500.
ERROR_MEMBER_ID = "W500000005"

APPROVED = ("Approved", "Approved as requested.")

MEMBERS: dict[str, Member] = {
    m.member_id: m
    for m in (
        Member(
            "W100000001",
            "Jane",
            "Doe",
            date(1990, 1, 15),
            True,
            "Sandbox Gold PPO",
            "$25.00",
            "12/31/2026",
            APPROVED,
        ),
        Member(
            "W200000002",
            "John",
            "Roe",
            date(1985, 6, 30),
            False,
            "Sandbox Silver HMO",
            "$40.00",
            "12/31/2024",
            ("Denied", "Coverage inactive."),
        ),
        Member(
            "W600000006",
            "Maria",
            "Garcia",
            date(1975, 3, 2),
            True,
            "Sandbox Bronze EPO",
            "$50.00",
            "12/31/2026",
            ("Pended", "Under clinical review"),
        ),
        Member(
            "W700000007",
            "Li",
            "Wei",
            date(1968, 11, 20),
            True,
            "Sandbox Gold PPO",
            "$25.00",
            "12/31/2026",
            ("More Information Needed", "Submit recent imaging results"),
        ),
        Member(
            "W800000008",
            "Sam",
            "Patel",
            date(2001, 7, 4),
            True,
            "Sandbox Silver HMO",
            "$40.00",
            "12/31/2026",
            ("Denied", "Not medically necessary"),
        ),
    )
}

MSG_NOT_FOUND = "No member found matching the criteria."
MSG_DOB_MISMATCH = "Date of birth does not match our records."
MSG_COVERAGE_INACTIVE = "Coverage inactive on the date of service."


def match_patient(member_id: str, first: str, last: str, dob: date) -> tuple[Member | None, str]:
    """Find the member the way the portal does: id exact, names case-insensitive, then DOB.

    Returns ``(member, "")`` on a match, else ``(None, alert text)``.
    """
    member = MEMBERS.get(member_id.strip().upper())
    if (
        member is None
        or member.first_name.casefold() != first.strip().casefold()
        or member.last_name.casefold() != last.strip().casefold()
    ):
        return None, MSG_NOT_FOUND
    if member.dob != dob:
        return None, MSG_DOB_MISMATCH
    return member, ""


def _seed_claims() -> list[Claim]:
    """The 23 past claims of W100000001: the three documented test claims, then 20 paid ones."""
    claims = [
        Claim(
            "CLM-PAID-0001",
            "W100000001",
            date(2025, 3, 10),
            "Paid",
            Decimal("120.00"),
            Decimal("96.00"),
            "Payment issued",
        ),
        Claim(
            "CLM-PROC-0002",
            "W100000001",
            date(2025, 2, 20),
            "In Process",
            Decimal("250.00"),
            Decimal("0.00"),
            "Pending review",
        ),
        Claim(
            "CLM-DENY-0003",
            "W100000001",
            date(2025, 2, 3),
            "Denied",
            Decimal("310.00"),
            Decimal("0.00"),
            "Service not covered",
        ),
    ]
    for i in range(20):
        # One visit a month going back from January 2025; amounts vary so rows differ.
        year = 2024 - i // 12
        month = 12 - i % 12
        billed = Decimal(90 + 15 * (i % 7)).quantize(Decimal("0.01"))
        claims.append(
            Claim(
                f"CLM-HIST-{i + 4:04d}",
                "W100000001",
                date(year, month, 12),
                "Paid",
                billed,
                (billed * Decimal("0.8")).quantize(Decimal("0.01")),
                "Payment issued",
            )
        )
    return claims


SEED_CLAIMS: tuple[Claim, ...] = tuple(_seed_claims())
