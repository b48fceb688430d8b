"""Version history benchmark: what reading a document with many stored versions costs.
Prints figures; it does not pass or fail.

    python bench/versions.py [--versions 20000] [--calls 20]

Uses DATABASE_URL / REDIS_URL when set, else starts an embedded PostgreSQL and Redis in a
temporary directory. The API runs in this process (Flask's test client).

An account stores --versions versions of a task type's SOP and of the sandbox's profile
(inserted directly: a PUT per version would take minutes). Then, each --calls times: the SOP
(GET /sops/{type}), the profile (GET /portals/{name}/profile), the first and a middle page of
each one's versions (GET .../versions?limit=1000), with the bytes of each answer and the median
time. The plan of a middle page shows the index that serves it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.services import bench_runtime  # noqa: E402
from shared.accounts import provision_account  # noqa: E402
from shared.sop.library import builtin_sop_text  # noqa: E402
from shared.sop.profile import builtin_profile_text  # noqa: E402

# The built-in documents with another title: the account's own version 1 of each.
SOP = builtin_sop_text("check_eligibility").replace("title: ", "title: Ours - ", 1)
PROFILE = builtin_profile_text("sandbox").replace("title: ", "title: Ours - ", 1)
YAML = {"Content-Type": "application/yaml"}


def _store(runtime, client, headers: dict[str, str], account_id: int, versions: int) -> None:
    """Version 1 of each document through the API, the rest as copies of it."""
    for url, text in (("/sops/check_eligibility", SOP), ("/portals/sandbox/profile", PROFILE)):
        response = client.put(url, data=text, headers={**headers, **YAML})
        assert response.status_code == 201, response.get_json()
    with runtime.pool.connection() as conn:
        for table, column in (("sops", "task_type"), ("portal_profiles", "portal")):
            conn.execute(
                f"INSERT INTO {table} (account_id, {column}, version, body, digest)"
                f" SELECT account_id, {column}, g, body, digest FROM {table},"
                " generate_series(2, %s) AS g WHERE account_id = %s AND version = 1",
                (versions, account_id),
            )
            conn.execute(f"ANALYZE {table}")


def _time(client, headers: dict[str, str], url: str, calls: int) -> None:
    client.get(url, headers=headers)  # warm: parses, pool
    times, size, status = [], 0, 0
    for _ in range(calls):
        began = time.perf_counter()
        response = client.get(url, headers=headers)
        times.append((time.perf_counter() - began) * 1000)
        size, status = len(response.get_data()), response.status_code
    print(f"{url:<50} {status}  {size:>10,} bytes  median {statistics.median(times):7.1f} ms")


def _plan(runtime, account_id: int, before: int) -> None:
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "EXPLAIN ANALYZE SELECT id, version, digest, created_at FROM sops"
            " WHERE account_id = %s AND task_type = 'check_eligibility' AND version < %s"
            " ORDER BY version DESC LIMIT 1001",
            (account_id, before),
        ).fetchall()
    print("\n".join(next(iter(row.values())) for row in rows))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    with bench_runtime(rate_limit="100000/second") as runtime:
        _run(runtime, args)


def _run(runtime, args) -> None:
    from api import create_app
    from api.pagination import encode_cursor

    client = create_app(runtime=runtime).test_client()
    with runtime.pool.connection() as conn:
        made = provision_account(conn, runtime.fernet, "bench")
    headers = {"Authorization": f"Bearer {made.api_key}"}
    _store(runtime, client, headers, made.account_id, args.versions)
    middle = encode_cursor(args.versions // 2)
    print(f"{args.versions:,} versions of an SOP and of a portal profile")
    for url in ("/sops/check_eligibility", "/sops/check_eligibility/versions?limit=1000",
                f"/sops/check_eligibility/versions?limit=1000&cursor={middle}",
                "/portals/sandbox/profile", "/portals/sandbox/profile/versions?limit=1000",
                f"/portals/sandbox/profile/versions?limit=1000&cursor={middle}"):  # fmt: skip
        _time(client, headers, url, args.calls)
    _plan(runtime, made.account_id, args.versions // 2)


if __name__ == "__main__":
    main()
