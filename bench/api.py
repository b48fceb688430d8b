"""API benchmark: POST /tasks against a floor endpoint, and reads with 100,000 tasks. Prints
figures and ratios; it does not pass or fail.

    python bench/api.py [--seconds 4] [--clients 16] [--tasks 100000] [--rates 50,100,200]
                        [--batch 100] [--only create|batch|reads|profile]
                        [--profile-out FILE]

Uses DATABASE_URL / REDIS_URL when set, else starts an embedded PostgreSQL and Redis in a
temporary directory. Two gunicorn servers run on loopback with the API's own gunicorn settings
(``api/gunicorn_conf.py``, API_WORKERS=2): the API, and the floor (``bench/floor.py``: one
committed INSERT and one LPUSH per request). No worker runs, so messages stay queued.

(a) POST /tasks and the floor at N concurrent clients, all on one account and on N accounts:
    throughput, p50, p99, and the ratio to the floor.
(a2) POST /tasks and the floor at steady offered rates (--rates), on N accounts: an open loop
    that sends on a schedule whatever the answers, with each latency counted from the scheduled
    time; what a client sees when the API is not saturated.
(a3) (run last) POST /tasks/batch with --batch tasks a call, at N clients on N accounts: tasks
    created a second against the floor's requests a second (the floor creates one row a request).
(b) the same after --tasks tasks exist in the one account (inserted with SQL), three rounds in a
    row: creation should cost the same as the tables grow.
(c) GET /tasks/{id} and GET /tasks?status=... at N clients with those tasks in the account, and
    the query plans of the list queries.
(p) (--only profile) where POST /tasks' CPU goes: py-spy samples the API's workers under the
    load of (a) on N accounts, counting only threads that hold the GIL, and prints the functions
    with the largest shares of the samples, with their callees (inclusive) and alone (self).
    --profile-out keeps the raw samples (py-spy's collapsed stacks, for a flame graph).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.floor import CREATE_TABLE  # noqa: E402
from bench.services import free_port, services  # noqa: E402
from shared.accounts import create_account, create_api_key  # noqa: E402
from shared.tasks import list_tasks_query  # noqa: E402

BODY = {
    "type": "check_eligibility",
    "data": "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15",
}
SANDBOX_LOGIN = {"username": "bench", "password": "bench-password"}
# How the bulk-loaded tasks are spread over the final statuses (the rest are completed).
STATUS_MIX = (
    "CASE WHEN g %% 100 < 4 THEN 'failed' WHEN g %% 100 < 14 THEN 'completed_with_issues'"
    " WHEN g %% 1000 = 999 THEN 'canceled' ELSE 'completed' END"
)


@dataclass
class Result:
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    # CPU seconds each process role used over the whole load (warm-up included), and the
    # requests answered in that time.
    cpu_s: dict[str, float] = field(default_factory=dict)
    answered: int = 0

    def cpu_line(self) -> str:
        """CPU milliseconds per request by process role: where the time goes."""
        per = {role: used / self.answered * 1000 for role, used in self.cpu_s.items()}
        parts = "  ".join(f"{role} {ms:.2f}" for role, ms in per.items())
        return f"CPU ms per request: {parts}  (all {sum(per.values()):.2f})"

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def line(self) -> str:
        errors = f"   {self.errors} errors" if self.errors else ""
        return (
            f"{self.rate:9.1f} req/s  p50 {self.pct(0.5):6.1f} ms  p99 {self.pct(0.99):6.1f} ms"
            f"{errors}"
        )


async def _load(
    url: str,
    method: str,
    paths: Sequence[str],
    headers: Sequence[dict[str, str]],
    *,
    clients: int,
    seconds: float,
    warmup_s: float,
    body: dict | None,
) -> Result:
    """``clients`` loops, each sending one request after another for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    answered = 0
    counting = False
    stop = False

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors, answered
        n = 0
        while not stop:
            path = paths[(i + n * clients) % len(paths)]
            n += 1
            started = time.perf_counter()
            async with session.request(
                method, url + path, json=body, headers=headers[i % len(headers)]
            ) as response:
                await response.read()
                ok = response.status == 200
            answered += 1
            if counting:
                latencies.append((time.perf_counter() - started) * 1000)
                errors += not ok

    cpu_before = cpu_by_role()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        loops = [asyncio.create_task(client(i, session)) for i in range(clients)]
        await asyncio.sleep(warmup_s)
        counting = True
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        counting = False
        elapsed = time.perf_counter() - started
        stop = True
        await asyncio.gather(*loops)
    cpu_after = cpu_by_role()
    cpu = {role: cpu_after[role] - cpu_before.get(role, 0.0) for role in cpu_after}
    return Result(len(latencies), elapsed, latencies, errors, cpu, answered)


async def _paced(
    url: str,
    paths: Sequence[str],
    headers: Sequence[dict[str, str]],
    *,
    rate: float,
    seconds: float,
    warmup_s: float,
    body: dict,
    connections: int,
) -> Result:
    """POSTs sent on a fixed schedule, ``rate`` a second, whether or not the earlier ones were
    answered (an open loop, as a batch from many clients arrives). Each latency is counted from
    the request's scheduled time, so a server that falls behind is charged for the requests
    that queued behind it (the client's pool holds up to ``connections``)."""
    latencies: list[float] = []
    errors = 0
    sends: set[asyncio.Task] = set()

    async def send(n: int, due: float, counted: bool, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        async with session.post(
            url + paths[n % len(paths)], json=body, headers=headers[n % len(headers)]
        ) as response:
            await response.read()
            ok = response.status == 200
        if counted:
            latencies.append((time.perf_counter() - due) * 1000)
            errors += not ok

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        begun = time.perf_counter()
        total = int((warmup_s + seconds) * rate)
        for n in range(total):
            due = begun + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(send(n, due, n >= warmup_s * rate, session))
            sends.add(task)
            task.add_done_callback(sends.discard)
        await asyncio.gather(*sends)
    return Result(len(latencies), seconds, latencies, errors)


def paced(url: str, headers, rate: float, args) -> Result:
    return asyncio.run(
        _paced(url, ["/tasks"], headers, rate=rate, seconds=args.seconds,
               warmup_s=args.warmup_s, body=BODY, connections=4 * args.clients)
    )  # fmt: skip


ROLES = (("API", "api:create_app"), ("floor", "floor:create_app"), ("PostgreSQL", "postgres"),
         ("Redis", "redis"))  # fmt: skip


def cpu_by_role() -> dict[str, float]:
    """CPU seconds used so far by the servers' processes (Linux /proc), by role; the load
    generator is this process."""
    tick = os.sysconf("SC_CLK_TCK")
    used = dict.fromkeys([role for role, _ in ROLES] + ["load generator"], 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        if int(entry.name) == os.getpid():
            used["load generator"] += cpu
            continue
        for role, mark in ROLES:
            if mark in command:
                used[role] += cpu
                break
    return used


def load(url: str, method: str, paths: Sequence[str], headers, args, body=None) -> Result:
    return asyncio.run(
        _load(
            url,
            method,
            paths,
            headers,
            clients=args.clients,
            seconds=args.seconds,
            warmup_s=args.warmup_s,
            body=body,
        )
    )


def serve(app: str, env: dict[str, str], log: Path, extra: Sequence[str] = ()) -> tuple:
    """A gunicorn server with the API's settings file; (process, base URL)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", *extra, app],
        cwd=ROOT,
        env={**env, "PORT": str(port)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/", timeout=5)
            return process, url
        except requests.RequestException:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    stop(process)
    raise SystemExit(f"{app} did not start; see {log}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def accounts(database_url: str, n: int) -> list[tuple[int, dict[str, str]]]:
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        made = []
        for i in range(n):
            account = create_account(conn, f"bench {i}")
            made.append((account, {"Authorization": f"Bearer {create_api_key(conn, account)}"}))
    return made


def bulk_load(database_url: str, account: int, count: int, *, floor_rows: bool = True) -> None:
    """``count`` finished tasks in the account (and as many floor rows), inserted with SQL."""
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        sop_id = conn.execute("SELECT min(id) AS id FROM sops").fetchone()["id"]
        conn.execute(
            f"""
            WITH seq AS (
                UPDATE accounts SET task_seq = task_seq + %(n)s WHERE id = %(account)s
                RETURNING task_seq - %(n)s AS base)
            INSERT INTO tasks (account_id, task_number, type, status, title, instructions,
                               sop_id, data, notes, attempts, started_at, completed_at,
                               created_at, updated_at)
            SELECT %(account)s, seq.base + g, 'check_eligibility', {STATUS_MIX},
                   'Check eligibility', 'Sign in; search the member; read the plan.',
                   %(sop)s, %(data)s, 'Coverage active.', 1, now(), now(), now(), now()
              FROM seq, generate_series(1, %(n)s) AS g
            """,
            {"n": count, "account": account, "sop": sop_id, "data": BODY["data"]},
        )
        if floor_rows:
            conn.execute(
                "INSERT INTO bench_floor (body) SELECT %s FROM generate_series(1, %s)",
                (psycopg.types.json.Jsonb(BODY), count),
            )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE tasks")
        conn.execute("VACUUM ANALYZE bench_floor")


def newest(database_url: str, account: int) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT max(id) FROM tasks WHERE account_id = %s", (account,))
        return row.fetchone()[0]


def explain(database_url: str, account: int, statuses: list[str]) -> str:
    sql, params = list_tasks_query(account, before_id=None, limit=51, statuses=statuses, types=[])
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}", params).fetchall()
    # The scan of tasks is what grows with the account; the per-row joins do not.
    keep = ("Limit", "Scan", "Index Cond", "Filter", "Rows Removed", "Sort Key", "Execution")
    lines = [r[0] for r in rows if any(k in r[0] for k in keep)]
    return "\n".join("      " + line for line in lines if "task_files" not in line)


def merged(parts: list[Result]) -> Result:
    return Result(
        sum(p.requests for p in parts),
        sum(p.seconds for p in parts),
        [ms for p in parts for ms in p.latencies_ms],
        sum(p.errors for p in parts),
        {role: sum(p.cpu_s.get(role, 0.0) for p in parts) for role in parts[0].cpu_s},
        sum(p.answered for p in parts),
    )


def side_by_side(floor: Callable[[], Result], api: Callable[[], Result], slices: int):
    """Floor and API in alternating slices, so a change in the machine's load (it is shared)
    falls on both alike; each side's slices are then added up."""
    floor_parts, api_parts = [], []
    for _ in range(slices):
        floor_parts.append(floor())
        api_parts.append(api())
    return merged(floor_parts), merged(api_parts)


def creation_round(
    api: str, floor: str, one: list[dict], many: list[dict], args, label: str,
    show_cpu: bool = False,
) -> dict[str, tuple[Result, Result]]:  # fmt: skip
    print(f"{label}")
    out = {}
    for case, headers in (("1 account", one), (f"{len(many)} accounts", many)):
        floor_result, api_result = side_by_side(
            lambda h=headers: load(floor, "POST", ["/tasks"], h, args, BODY),
            lambda h=headers: load(api, "POST", ["/tasks"], h, args, BODY),
            args.slices,
        )
        out[case] = (floor_result, api_result)
        print(f"    {case:<12} floor       {floor_result.line()}")
        print(f"    {'':<12} POST /tasks {api_result.line()}")
        print(f"    {'':<12} ratio POST /tasks / floor {api_result.rate / floor_result.rate:6.2f}")
        if show_cpu:
            for name, result, skip in (("floor", floor_result, "API"),
                                       ("POST /tasks", api_result, "floor")):  # fmt: skip
                result.cpu_s.pop(skip, None)
                print(f"    {'':<12} {name:<11} {result.cpu_line()}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="measured seconds per slice")
    parser.add_argument("--slices", type=int, default=4, help="alternating slices per case")
    parser.add_argument("--warmup-s", type=float, default=0.5, help="unmeasured, per slice")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks bulk-loaded for (b)")
    parser.add_argument("--rates", default="50,100,200",
                        help="steady offered rates for (a2), requests a second")  # fmt: skip
    parser.add_argument("--batch", type=int, default=100, help="tasks per call in (a3)")
    parser.add_argument("--only", choices=["create", "batch", "reads", "profile"],
                        help="run (a), (a3), (c) or (p) alone")  # fmt: skip
    parser.add_argument("--profile-out", type=Path, help="(p): keep the raw samples here")
    args = parser.parse_args()
    args.rates = [float(rate) for rate in args.rates.split(",")]
    # A TERM (a timeout, a CI job cancelled) unwinds too, so the servers started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp_name:
        tmp = Path(tmp_name)
        database_url, redis_url, cleanup = services(tmp)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(CREATE_TABLE)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "UNDERSTUDY_RUN_DIR": str(tmp),
            "API_WORKERS": os.environ.get("API_WORKERS", "2"),
            # Counted as in production (one Redis round trip per request), but never reached:
            # the bench measures the cost of a creation, not the limit.
            "RATE_LIMIT": "1000000/second",
        }
        made = accounts(database_url, args.clients + 1)
        small_account, small_headers = made.pop()
        one = [made[0][1]]
        many = [headers for _, headers in made]
        servers: list[subprocess.Popen] = []
        try:
            api_process, api = serve("api:create_app()", env, tmp / "api.log")
            servers.append(api_process)
            floor_process, floor = serve(
                "floor:create_app()", env, tmp / "floor.log", ["--pythonpath", "bench"]
            )
            servers.append(floor_process)
            for headers in (*many, small_headers):
                # A task for a portal without credentials is refused: store the sandbox's.
                requests.put(api + "/credentials/sandbox", json=SANDBOX_LOGIN, headers=headers,
                             timeout=10).raise_for_status()  # fmt: skip
            # The small account's tasks, for comparing reads; the SOP row they point at first.
            requests.post(api + "/tasks", json=BODY, headers=small_headers, timeout=10)
            bulk_load(database_url, small_account, SMALL_TASKS, floor_rows=False)
            small = (small_headers, newest(database_url, small_account))
            if args.only == "profile":
                profile(api_process, api, many, tmp, args)
            else:
                run(api, floor, one, many, small, made[0][0], database_url, args)
        finally:
            for process in servers:
                stop(process)
            for done in cleanup:
                done()


def run(api, floor, one, many, small, account, database_url, args) -> None:
    print(
        f"{args.clients} clients; floor and API alternate in {args.slices} slices of"
        f" {args.seconds:g} s (after {args.warmup_s:g} s unmeasured) per case; gunicorn with"
        f" API_WORKERS={os.environ.get('API_WORKERS', '2')} for both"
    )
    if args.only == "batch":
        batches(api, floor, many, args)
        return
    if args.only == "reads":
        bulk_load(database_url, account, args.tasks)
        reads(api, one, small, account, database_url, args)
        return
    print()
    first = creation_round(api, floor, one, many, args, "(a) POST /tasks, near-empty tables",
                           show_cpu=True)  # fmt: skip
    if args.only == "create":
        return
    steady_rates(api, floor, many, first[f"{len(many)} accounts"][1].rate, args)
    started = time.monotonic()
    bulk_load(database_url, account, args.tasks)
    print()
    print(f"    ({args.tasks:,} tasks inserted with SQL in {time.monotonic() - started:.1f} s)")
    rounds = [
        creation_round(api, floor, one, many, args, f"(b) round {i}, {args.tasks:,} more tasks")
        for i in (1, 2, 3)
    ]
    print()
    print("    after / at first, per round (1.00 = no slower as the tables grow): the rate, and")
    print("    in brackets the ratio to the floor (which the machine's load moves less)")
    for case, (first_floor, first_api) in first.items():
        after = "  ".join(
            f"{r[case][1].rate / first_api.rate:5.2f}"
            f" ({(r[case][1].rate / r[case][0].rate) / (first_api.rate / first_floor.rate):4.2f})"
            for r in rounds
        )
        print(f"    {case:<12} POST /tasks {after}")
    reads(api, one, small, account, database_url, args)
    # Last: its tens of thousands of new tasks would be part of (b) and (c)'s tables otherwise.
    batches(api, floor, many, args)


def reads(api, one, small, account, database_url, args) -> None:
    print()
    big = (one[0], newest(database_url, account))
    print(f"(c) reads at {args.clients} clients, an account with {SMALL_TASKS:,} tasks -> one with"
          f" {args.tasks:,}, alternating")  # fmt: skip
    for name, path in READS.items():
        few, lots = side_by_side(
            lambda p=path: load(api, "GET", [p.format(id=small[1])], [small[0]], args),
            lambda p=path: load(api, "GET", [p.format(id=big[1])], [big[0]], args),
            args.slices,
        )
        print(f"    {name:<38} p50 {few.pct(0.5):6.1f} -> {lots.pct(0.5):6.1f} ms"
              f"   p99 {few.pct(0.99):6.1f} -> {lots.pct(0.99):6.1f} ms"
              f"   {few.rate:6.1f} -> {lots.rate:6.1f} req/s")  # fmt: skip
    print()
    for statuses in (["failed"], ["completed"], ["pending", "dispatching"]):
        print(f"    plan of GET /tasks?status={','.join(statuses)} with {args.tasks:,} tasks")
        print(explain(database_url, account, statuses))


def steady_rates(api: str, floor: str, many: list[dict], saturated: float, args) -> None:
    """(a2) Latency at steady offered rates below saturation: what a client sees when the API
    is not its own bottleneck (under the saturating load of (a), latency is mostly queueing)."""
    print()
    print(f"(a2) POST /tasks at a steady offered rate, {len(many)} accounts (an open loop: sent on"
          " a schedule, latency counted from the scheduled time)")  # fmt: skip
    for rate in args.rates:
        floor_result, api_result = side_by_side(
            lambda r=rate: paced(floor, many, r, args),
            lambda r=rate: paced(api, many, r, args),
            args.slices,
        )
        print(f"    {rate:5.0f} req/s ({rate / saturated:4.0%} of POST /tasks' saturated rate)")
        print(f"    {'':<12} floor       {floor_result.line()}")
        print(f"    {'':<12} POST /tasks {api_result.line()}")


def batches(api: str, floor: str, many: list[dict], args) -> None:
    """(a3) Tasks created a second through POST /tasks/batch, against the floor's rows a
    second: what a client sending a clinic's day of checks can count on."""
    print()
    print(f"(a3) POST /tasks/batch, {args.batch} tasks a call, {len(many)} accounts")
    batch = {"tasks": [BODY] * args.batch}
    floor_result, api_result = side_by_side(
        lambda: load(floor, "POST", ["/tasks"], many, args, BODY),
        lambda: load(api, "POST", ["/tasks/batch"], many, args, batch),
        args.slices,
    )
    tasks_rate = api_result.rate * args.batch
    print(f"    {'':<12} floor       {floor_result.line()}")
    print(f"    {'':<12} batches     {api_result.line()}")
    print(f"    {'':<12} tasks a second {tasks_rate:9.1f}; ratio to the floor's rows a second"
          f" {tasks_rate / floor_result.rate:6.2f}")  # fmt: skip
    floor_result.cpu_s.pop("API", None)
    api_result.cpu_s.pop("floor", None)
    api_result.answered *= args.batch  # per task, not per call
    print(f"    {'':<12} floor       {floor_result.cpu_line()}")
    print(f"    {'':<12} per task    {api_result.cpu_line()}")
    alone = argparse.Namespace(**{**vars(args), "clients": 1})
    one = merged([load(api, "POST", ["/tasks/batch"], many[:1], alone, batch)
                  for _ in range(args.slices)])  # fmt: skip
    print(f"    {'':<12} one client  {one.line()}   ({one.rate * args.batch:.1f} tasks a second)")


def profile(server: subprocess.Popen, api: str, many: list[dict], tmp: Path, args) -> None:
    """(p) py-spy on the API's gunicorn workers while N clients on N accounts send POST /tasks
    for the case's whole measured time (``--slices`` x ``--seconds``)."""
    seconds = args.slices * args.seconds
    raw = args.profile_out or tmp / "profile.txt"
    load(api, "POST", ["/tasks"], many, args, BODY)  # warm: the SOPs read, connections made
    spy = subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(server.pid),
         "--subprocesses", "--gil", "--function", "--format", "raw", "--rate", "250",
         "--duration", str(int(seconds + args.warmup_s + 1)), "--output", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    time.sleep(1)  # py-spy attaches to the master and finds its workers
    result = load(api, "POST", ["/tasks"], many, argparse.Namespace(**{**vars(args),
                  "seconds": seconds}), BODY)  # fmt: skip
    if spy.wait() != 0 or not raw.exists():
        raise SystemExit("py-spy recorded nothing (it needs the right to trace the API's workers)")
    print()
    print(f"(p) POST /tasks on {len(many)} accounts under py-spy: {result.line()}")
    inclusive, alone, total = profile_shares(raw.read_text().splitlines())
    print(f"    {total:,} samples holding the GIL in the API's workers; share of them:")
    print(f"    {'with callees':>12}  {'alone':>6}  function")
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])
    shown = [(name, n) for name, n in ranked if _ours(name)][:PROFILE_ROWS]
    for name, n in shown:
        print(f"    {n / total:12.1%}  {alone.get(name, 0) / total:6.1%}  {name}")
    print("    most time alone (anywhere, our code or a library's):")
    for name, n in sorted(alone.items(), key=lambda item: -item[1])[:PROFILE_ROWS]:
        print(f"    {inclusive[name] / total:12.1%}  {n / total:6.1%}  {name}")
    if args.profile_out:
        print(f"    raw samples (collapsed stacks) in {raw}")


PROFILE_ROWS = 25


def profile_shares(lines: list[str]) -> tuple[dict[str, int], dict[str, int], int]:
    """Samples by function from py-spy's raw output (``frame;frame;... count``, the leaf
    last): (with callees, alone, total). A function on a stack twice counts once."""
    inclusive: dict[str, int] = {}
    alone: dict[str, int] = {}
    total = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        n = int(count)
        total += n
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0) + n
        alone[frames[-1]] = alone.get(frames[-1], 0) + n
    return inclusive, alone, total


def _ours(frame: str) -> bool:
    """A frame of Understudy's own code (py-spy names the file from its package down)."""
    where = frame.rpartition("(")[2]
    return where.startswith(("api/", "shared/"))


# Enough that a page of failed tasks (4 %) is as full on the small account as on the big one:
# a page costs what it holds, and with 1,000 (40 failed) the big account's page of 50 took a
# quarter longer to serve for being a quarter bigger, not for the account being bigger.
SMALL_TASKS = 2_000
READS = {
    "GET /tasks/{id}": "/tasks/{id}",
    "GET /tasks?status=failed (4 %)": "/tasks?status=failed",
    "GET /tasks?status=completed (85 %)": "/tasks?status=completed",
    "GET /tasks?status=running (none)": "/tasks?status=running",
    "GET /tasks?status=pending,dispatching": "/tasks?status=pending,dispatching",
}


if __name__ == "__main__":
    main()
