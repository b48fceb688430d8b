"""GET /task-types benchmark: what a small account's list costs while big accounts list theirs.
Prints figures; it does not pass or fail.

    python bench/task_types.py [--big-accounts 6] [--types 100] [--rounds 3]

Uses DATABASE_URL / REDIS_URL when set, else starts an embedded PostgreSQL and Redis in a
temporary directory. The API runs in this process (Flask's test client), so the parses (YAML
documents composed) and the queries (statements executed) of each call can be counted.

(a) a small account (the built-in types and two of its own) lists its types alone, warm.
(b) --big-accounts accounts, each with --types types of its own (MAX_CUSTOM_TYPES), list
    theirs in turn, then the small account lists its own again; --rounds times. Each of the
    small account's calls should cost what it cost alone: no parse, as many queries.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.services import bench_runtime  # noqa: E402
from shared.accounts import provision_account  # noqa: E402
from shared.sop import store as sop_store  # noqa: E402

SOP = """
task_type: {name}
title: Read a member's plan ({name})
portal: {{name: sandbox}}
inputs:
  - {{name: member_id, format: member_id, required: true}}
  - {{name: patient, format: name, required: true}}
steps:
  - login: {{url: /dashboard}}
  - click: {{link: Eligibility & Benefits}}
outcomes: [{{status: completed, notes: "ok"}}]
"""


class Counts:
    """YAML documents composed (one per parse) and statements executed, while counting."""

    def __init__(self) -> None:
        self.parses = 0
        self.queries = 0

    @contextmanager
    def counting(self) -> Iterator[None]:
        compose, execute = yaml.composer.Composer.compose_document, psycopg.Cursor.execute

        def composed(composer):
            self.parses += 1
            return compose(composer)

        def executed(cursor, *args, **kwargs):
            self.queries += 1
            return execute(cursor, *args, **kwargs)

        yaml.composer.Composer.compose_document = composed
        psycopg.Cursor.execute = executed
        try:
            yield
        finally:
            yaml.composer.Composer.compose_document = compose
            psycopg.Cursor.execute = execute


def _account(runtime, name: str, types: int) -> dict[str, str]:
    """An account with ``types`` task types of its own, stored as PUT /sops stores them."""
    with runtime.pool.connection() as conn:
        made = provision_account(conn, runtime.fernet, name)
        for n in range(types):
            task_type = f"{name}_type_{n}"
            sop_store.add_custom_type(conn, made.account_id, task_type, types)
            sop_store.put_sop_version(
                conn, made.account_id, task_type, SOP.format(name=task_type), max_versions=100
            )
    return {"Authorization": f"Bearer {made.api_key}"}


def _list(client, headers: dict[str, str]) -> tuple[float, int, int]:
    """One GET /task-types: (milliseconds, parses, queries)."""
    counts = Counts()
    with counts.counting():
        began = time.perf_counter()
        response = client.get("/task-types", headers=headers)
        ms = (time.perf_counter() - began) * 1000
    assert response.status_code == 200, response.get_json()
    return ms, counts.parses, counts.queries


def _show(label: str, calls: list[tuple[float, int, int]]) -> None:
    ms = [c[0] for c in calls]
    print(
        f"{label:<44} median {statistics.median(ms):7.1f} ms  max {max(ms):7.1f} ms"
        f"  parses/call {statistics.mean(c[1] for c in calls):6.1f}"
        f"  queries/call {statistics.mean(c[2] for c in calls):6.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-accounts", type=int, default=6)
    parser.add_argument("--types", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with bench_runtime(max_custom_types=args.types) as runtime:
        _run(runtime, args)


def _run(runtime, args) -> None:
    from api import create_app

    client = create_app(runtime=runtime).test_client()
    small = _account(runtime, "small", 2)
    big = [_account(runtime, f"big{n}", args.types) for n in range(args.big_accounts)]
    print(f"parsed-SOP cache: {sop_store.PARSED_SOPS_MAX} entries")
    _list(client, small)  # the first call parses (and stores the built-in SOPs)
    alone_calls = [_list(client, small) for _ in range(5)]
    _show("(a) small account alone, warm", alone_calls)
    big_calls, small_calls = [], []
    for _ in range(args.rounds):
        big_calls += [_list(client, headers) for headers in big]
        small_calls.append(_list(client, small))
    _show(f"(b) {args.big_accounts} big accounts x {args.types} types", big_calls)
    _show("(b) small account after the big ones", small_calls)
    alone = statistics.median(c[0] for c in alone_calls)
    after = statistics.median(c[0] for c in small_calls)
    print(f"small account after the big ones / alone: {after / alone:.2f}")


if __name__ == "__main__":
    main()
