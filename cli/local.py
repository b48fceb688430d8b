"""The commands that work on this host's database: accounts and keys, migrations, and every
process of the stack."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cli.output import show
from shared.portals import SANDBOX_PORTAL
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.db import Conn
    from shared.runtime import Runtime

# The sandbox portal's documented user (docs/sandbox.md); --sandbox stores these, encrypted.
SANDBOX_USERNAME = "provider@sandbox"
SANDBOX_PASSWORD = "sandbox-pass-1"  # noqa: S105 - a public test credential of the sandbox
SANDBOX_TOTP_SECRET = "JBSWY3DPEHPK3PXP"  # noqa: S105 - likewise


class _NoAccount(Exception):
    """The command names an account that does not exist."""


@contextmanager
def _database(settings: Settings, *, account: int | None = None) -> Iterator[tuple[Runtime, Conn]]:
    """The runtime and one transaction on its database, for one command; with ``account``,
    _NoAccount unless that account exists. The runtime is closed after."""
    import psycopg
    from psycopg_pool import PoolTimeout

    from shared import embedded
    from shared.accounts import account_exists
    from shared.runtime import build_runtime

    url = embedded.database_url(settings)
    rt = build_runtime(settings, pool_size=2)
    try:
        try:
            rt.pool.wait(timeout=settings.db_pool_timeout_s)  # its first connection
        except PoolTimeout:
            _check_database(url)
            raise
        try:
            with rt.pool.connection() as conn:
                if account is not None and not account_exists(conn, account):
                    raise _NoAccount(account)
                try:
                    yield rt, conn
                except psycopg.OperationalError as err:  # lost while the command ran
                    stopped = f"{_first_line(err, url)} (the command stopped; nothing changed)"
                    raise DatabaseUnusable(stopped) from None
        except psycopg.OperationalError as err:  # lost while its change was committed
            raise DatabaseUnusable(
                f"{_first_line(err, url)} (lost as the command's change was committed: check"
                " whether it was stored before running it again)"
            ) from None
    finally:
        rt.close()


class DatabaseUnusable(Exception):
    """The command's database (DATABASE_URL) cannot be used: why, in libpq's words (the host,
    the port, the refusal), with the URL's password taken out."""


def _first_line(err: Exception, url: str) -> str:
    """The server's reason, without the statement it quotes or the URL's password."""
    from shared.db import without_password

    return without_password((str(err).strip().splitlines() or [""])[0], url)


def _check_database(url: str) -> None:
    """Connect once, directly: DatabaseUnusable if the server cannot be used. (A pool that
    timed out says only that it did.)"""
    import psycopg

    from shared.db import without_password

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as err:  # a malformed URL is a ProgrammingError, quoting it whole
        raise DatabaseUnusable(without_password(str(err).strip(), url)) from None


def _no_account(account: int) -> int:
    print(f"error: no account {account}", file=sys.stderr)
    return 2


def cmd_accounts_create(args: argparse.Namespace, settings: Settings) -> int:
    from shared.accounts import Credentials, provision_account
    from shared.ssrf import check_url

    if args.webhook_url:
        try:
            check_url(args.webhook_url, allow_private=settings.webhook_allow_private)
        except ValueError as exc:
            print(f"error: webhook URL refused: {exc}", file=sys.stderr)
            return 2
    sandbox = Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET)
    with _database(settings) as (rt, conn):
        made = provision_account(
            conn,
            rt.fernet,
            args.name,
            webhook_url=args.webhook_url,
            logins={SANDBOX_PORTAL: sandbox} if args.sandbox else None,
        )
    result = {
        "account_id": made.account_id,
        "api_key": made.api_key,
        "webhook_secret": made.webhook_secret,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"account_id:     {made.account_id}")
        print(f"api_key:        {made.api_key}   (shown once: store it now)")
        print(f"webhook_secret: {made.webhook_secret}")
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from shared.accounts import create_api_key

    try:
        with _database(settings, account=args.account) as (_, conn):
            key = create_api_key(conn, args.account, name=args.name)
    except _NoAccount:
        return _no_account(args.account)
    print(json.dumps({"account_id": args.account, "api_key": key}) if args.json else key)
    return 0


def cmd_accounts_list(args: argparse.Namespace, settings: Settings) -> int:
    from shared.accounts import list_accounts

    with _database(settings) as (_, conn):
        rows = list_accounts(conn)
    show(rows, ["id", "name", "share", "live_keys", "created_at"], as_json=args.json)
    return 0


def cmd_accounts_share(args: argparse.Namespace, settings: Settings) -> int:
    """Set an account's weight in fair share (operators only: the API has no way to)."""
    from shared.accounts import set_share

    try:
        with _database(settings, account=args.account) as (_, conn):
            set_share(conn, args.account, args.share)
    except _NoAccount:
        return _no_account(args.account)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"account {args.account}: share {args.share}")
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    from shared.accounts import list_api_keys

    try:
        with _database(settings, account=args.account) as (_, conn):
            rows = list_api_keys(conn, args.account)
    except _NoAccount:
        return _no_account(args.account)
    show(rows, ["account_id", "prefix", "name", "created_at", "revoked_at"], as_json=args.json)
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from shared.accounts import revoke_api_key

    with _database(settings) as (_, conn):
        revoked = revoke_api_key(conn, args.key)
    if not revoked:
        print("error: no live key with that prefix", file=sys.stderr)
        return 2
    print("revoked")
    return 0


def invite_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/console/invite/{token}"


def cmd_users_invite(args: argparse.Namespace, settings: Settings) -> int:
    """Invite a person to an account's console; prints the one-time link (shown once)."""
    from shared import audit
    from shared.users import UserError, invite_user

    try:
        with _database(settings, account=args.account) as (_, conn):
            token = invite_user(
                conn, account_id=args.account, email=args.email, role=args.role,
                ttl_s=settings.console_invite_ttl_s, limit=settings.max_users,
            )  # fmt: skip
            audit.record(
                conn, account_id=args.account, actor="cli", action="user.invite",
                target=f"email:{args.email.strip().lower()}", detail={"role": args.role},
            )  # fmt: skip
    except _NoAccount:
        return _no_account(args.account)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    base_url = args.url or f"http://{settings.api_host}:{settings.api_port}"
    link = invite_link(base_url, token)
    hours = settings.console_invite_ttl_s / 3600
    if args.json:
        print(json.dumps({"account_id": args.account, "email": args.email, "role": args.role,
                          "invite_url": link}))  # fmt: skip
    else:
        print(f"invite link for {args.email} ({args.role}), good for {hours:g} h, shown once:")
        print(link)
    return 0


def cmd_users_list(args: argparse.Namespace, settings: Settings) -> int:
    from shared.users import list_users

    try:
        with _database(settings, account=args.account) as (_, conn):
            rows = list_users(conn, args.account)
    except _NoAccount:
        return _no_account(args.account)
    show(rows, ["id", "email", "role", "active", "created_at", "disabled_at"], as_json=args.json)
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from shared import embedded
    from shared.db import migrate

    url = embedded.database_url(settings)
    _check_database(url)  # libpq's reason, not Alembic's traceback
    migrate(url)
    print("database is at the newest schema revision")
    return 0


def cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.loop import run_forever

    run_forever(settings)
    return 0


def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from werkzeug.serving import run_simple

    import sandbox

    run_simple(
        settings.sandbox_host,
        settings.sandbox_port,
        sandbox.create_app(),
        threaded=True,
        use_reloader=False,
    )
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """The whole stack in the foreground: embedded servers, migrations, every Procfile process."""
    from honcho.environ import parse_procfile
    from honcho.manager import Manager

    from shared import embedded
    from shared.db import migrate

    env = dict(os.environ)
    pg = redis_server = None
    if not settings.database_url:
        # The server stops when the last process holding it exits: this one, unless a CLI
        # call is still using it.
        env["DATABASE_URL"], pg = embedded.start_postgres(
            settings.run_dir / "pg", stop_on_exit=True
        )
    if not settings.redis_url:
        redis_server = embedded.RedisServer(
            settings.run_dir / "redis", settings.embedded_redis_port
        ).start()
        env["REDIS_URL"] = redis_server.url
    # Local receivers and portals are the point of a development stack. The children see a
    # DATABASE_URL, so they would otherwise take the defaults of a real deployment.
    env.setdefault("WEBHOOK_ALLOW_PRIVATE", "true")
    if pg is not None:
        env.setdefault("PORTAL_ALLOW_PRIVATE", "true")
    env.setdefault("UNDERSTUDY_RUN_DIR", str(settings.run_dir.resolve()))
    # Lines a person reads in a terminal; production's default is JSON.
    env.setdefault("LOG_FORMAT", "text")
    # One metrics folder for every process of the stack, emptied: counts start at zero.
    metrics_dir = settings.prometheus_multiproc_dir or settings.run_dir / "metrics"
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    # The Procfile names console scripts of this environment (understudy, celery, gunicorn).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    try:
        migrate(env["DATABASE_URL"])
        procfile = parse_procfile(Path(args.procfile).read_text())
        manager = Manager()
        for name, command in procfile.processes.items():
            if name != "release":
                manager.add_process(name, command, env=env)
        manager.loop()
        return manager.returncode or 0
    finally:
        if redis_server:
            redis_server.stop()
        if pg:
            pg.cleanup()
