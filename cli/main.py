"""The parser of the ``understudy`` command and its entry point."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

from cli import local, remote
from shared.settings import load_settings

DEFAULT_URL = "http://127.0.0.1:8000"
# The commands are named from what is registered, so a new one is never left out.
DESCRIPTION = (
    "Local commands work on this host's database: {local}. Remote commands call a running API:"
    " {remote}; they read the server from UNDERSTUDY_URL (default {url}) and the key from"
    " UNDERSTUDY_API_KEY. Every listing prints a table, or JSON with --json."
)


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def _local(sub: argparse._SubParsersAction) -> None:
    accounts = sub.add_parser("accounts", help="manage accounts (local)").add_subparsers(
        dest="action", required=True
    )
    create = accounts.add_parser("create", help="create an account with an API key")
    create.add_argument("--name", required=True)
    create.add_argument("--webhook-url", default=None)
    create.add_argument(
        "--sandbox", action="store_true", help="store the sandbox portal's test credentials"
    )
    _json_flag(create)
    create.set_defaults(func=local.cmd_accounts_create)
    listing = accounts.add_parser("list", help="every account")
    _json_flag(listing)
    listing.set_defaults(func=local.cmd_accounts_list)
    share = accounts.add_parser(
        "share",
        help="set an account's weight in fair share (1 to 100; default 1)",
        description="With both waiting, an account of share N runs N tasks for each one an"
        " account of share 1 runs.",
    )
    share.add_argument("account", type=int)
    share.add_argument("share", type=int)
    share.set_defaults(func=local.cmd_accounts_share)

    keys = sub.add_parser("keys", help="manage API keys (local)").add_subparsers(
        dest="action", required=True
    )
    key_create = keys.add_parser("create", help="create another API key for an account")
    key_create.add_argument("--account", type=int, required=True)
    key_create.add_argument("--name", default=None)
    _json_flag(key_create)
    key_create.set_defaults(func=local.cmd_keys_create)
    key_list = keys.add_parser("list", help="API keys by their visible prefix")
    key_list.add_argument("--account", type=int, default=None)
    _json_flag(key_list)
    key_list.set_defaults(func=local.cmd_keys_list)
    key_revoke = keys.add_parser("revoke", help="revoke a key by its visible prefix")
    key_revoke.add_argument("key")
    key_revoke.set_defaults(func=local.cmd_keys_revoke)

    users = sub.add_parser("users", help="console users (local)").add_subparsers(
        dest="action", required=True
    )
    invite = users.add_parser("invite", help="invite a person to the console; prints a link")
    invite.add_argument("--account", type=int, required=True)
    invite.add_argument("--email", required=True)
    invite.add_argument("--role", choices=["viewer", "operator", "admin"], default="viewer")
    invite.add_argument(
        "--url", default=None, help="the API's address in the link (default: API_HOST and PORT)"
    )
    _json_flag(invite)
    invite.set_defaults(func=local.cmd_users_invite)
    user_list = users.add_parser("list", help="an account's console users")
    user_list.add_argument("--account", type=int, required=True)
    _json_flag(user_list)
    user_list.set_defaults(func=local.cmd_users_list)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=local.cmd_migrate)
    sub.add_parser("scheduler", help="run the scheduler loop").set_defaults(
        func=local.cmd_scheduler
    )
    sub.add_parser("sandbox", help="serve the sandbox portal").set_defaults(func=local.cmd_sandbox)
    run = sub.add_parser("run", help="run the whole stack in the foreground")
    run.add_argument("--procfile", default="Procfile")
    run.set_defaults(func=local.cmd_run)


def _remote(sub: argparse._SubParsersAction) -> None:
    groups: dict[str, argparse._SubParsersAction] = {}
    helps = {
        "tasks": "create, read, list, cancel and wait for tasks",
        "batches": "follow the tasks that one batch call created",
        "sops": "validate, push and read SOPs",
        "portals": "the portals the agent signs in to",
        "credentials": "portal logins (write-only secrets)",
        "webhooks": "the webhook endpoint and its message log",
        "settings": "the account's settings: review, retention",
    }
    for (group, command), (help_text, _func, _columns) in remote.COMMANDS.items():
        if group not in groups:
            parent = sub.add_parser(group, help=f"{helps[group]} (remote)")
            groups[group] = parent.add_subparsers(dest="action", required=True)
        parser = groups[group].add_parser(command, help=help_text)
        remote.add_arguments(group, command, parser)
        parser.add_argument("--url", default=os.environ.get("UNDERSTUDY_URL", DEFAULT_URL))
        parser.add_argument(
            "--api-key", default=os.environ.get("UNDERSTUDY_API_KEY"), help="default: env"
        )
        _json_flag(parser)
        parser.set_defaults(remote=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="understudy", formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    _local(sub)
    local_commands = list(sub.choices)
    _remote(sub)
    remote_commands = [name for name in sub.choices if name not in local_commands]
    commands = DESCRIPTION.format(
        local=", ".join(local_commands), remote=", ".join(remote_commands), url=DEFAULT_URL
    )
    parser.description = f"Understudy's command line.\n\n{textwrap.fill(commands, 92)}"
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "remote", False):
            return remote.run(args)
        return int(args.func(args, load_settings()))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as err:
        # A file or folder the command was given (an SOP, a batch, an attachment, a download
        # folder, a Procfile): its name and why, not a traceback.
        print(f"error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C (a wait, a slow call): stop quietly, as a shell does
        print("interrupted", file=sys.stderr)
        return 130
    except local.DatabaseUnusable as err:
        # This host's database (a local command), down or refusing: why, not a traceback.
        print(f"error: the database (DATABASE_URL) cannot be used: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
