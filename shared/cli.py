"""The ``understudy`` command: accounts and keys, migrations, and every process of the stack."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from shared.portals import SANDBOX_PORTAL
from shared.settings import Settings, load_settings

# The sandbox portal's documented user (docs/sandbox.md); --sandbox stores these, encrypted.
SANDBOX_USERNAME = "provider@sandbox"
SANDBOX_PASSWORD = "sandbox-pass-1"  # noqa: S105 - a public test credential of the sandbox
SANDBOX_TOTP_SECRET = "JBSWY3DPEHPK3PXP"  # noqa: S105 - likewise


def _runtime(settings: Settings):
    from shared.runtime import build_runtime

    return build_runtime(settings, pool_size=2)


def cmd_accounts_create(args: argparse.Namespace, settings: Settings) -> int:
    from shared.accounts import Credentials, create_account, create_api_key, put_credentials
    from shared.ssrf import check_url
    from shared.webhooks import create_endpoint

    if args.webhook_url:
        try:
            check_url(args.webhook_url, allow_private=settings.webhook_allow_private)
        except ValueError as exc:
            print(f"error: webhook URL refused: {exc}", file=sys.stderr)
            return 2
    rt = _runtime(settings)
    try:
        with rt.pool.connection() as conn:
            account_id = create_account(conn, args.name)
            api_key = create_api_key(conn, account_id, name="default")
            secret = create_endpoint(conn, rt.fernet, account_id, args.webhook_url)
            if args.sandbox:
                creds = Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET)
                put_credentials(conn, rt.fernet, account_id, SANDBOX_PORTAL, creds)
    finally:
        rt.close()
    result = {"account_id": account_id, "api_key": api_key, "webhook_secret": secret}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"account_id:     {account_id}")
        print(f"api_key:        {api_key}   (shown once: store it now)")
        print(f"webhook_secret: {secret}")
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from shared.accounts import account_exists, create_api_key

    rt = _runtime(settings)
    try:
        with rt.pool.connection() as conn:
            if not account_exists(conn, args.account):
                print(f"error: no account {args.account}", file=sys.stderr)
                return 2
            key = create_api_key(conn, args.account, name=args.name)
    finally:
        rt.close()
    print(json.dumps({"account_id": args.account, "api_key": key}) if args.json else key)
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from shared.accounts import revoke_api_key

    rt = _runtime(settings)
    try:
        with rt.pool.connection() as conn:
            revoked = revoke_api_key(conn, args.key)
    finally:
        rt.close()
    if not revoked:
        print("error: no live key with that prefix", file=sys.stderr)
        return 2
    print("revoked")
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from shared import embedded
    from shared.db import migrate

    migrate(embedded.database_url(settings))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="understudy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    accounts = sub.add_parser("accounts", help="manage accounts").add_subparsers(
        dest="action", required=True
    )
    create = accounts.add_parser("create", help="create an account with an API key")
    create.add_argument("--name", required=True)
    create.add_argument("--webhook-url", default=None)
    create.add_argument(
        "--sandbox", action="store_true", help="store the sandbox portal's test credentials"
    )
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_accounts_create)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    key_create = keys.add_parser("create", help="create another API key for an account")
    key_create.add_argument("--account", type=int, required=True)
    key_create.add_argument("--name", default=None)
    key_create.add_argument("--json", action="store_true")
    key_create.set_defaults(func=cmd_keys_create)
    key_revoke = keys.add_parser("revoke", help="revoke a key by its visible prefix")
    key_revoke.add_argument("key")
    key_revoke.set_defaults(func=cmd_keys_revoke)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("scheduler", help="run the scheduler loop").set_defaults(func=cmd_scheduler)
    sub.add_parser("sandbox", help="serve the sandbox portal").set_defaults(func=cmd_sandbox)
    run = sub.add_parser("run", help="run the whole stack in the foreground")
    run.add_argument("--procfile", default="Procfile")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args, load_settings()))


if __name__ == "__main__":
    sys.exit(main())
