"""The commands that call the API of a running server, local or remote, through the Python client.

The server and key come from ``--url`` and ``--api-key``, or ``UNDERSTUDY_URL`` and
``UNDERSTUDY_API_KEY``."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.output import show
from shared.task_files import TaskFileError, name_lines, read_task_file

if TYPE_CHECKING:  # imported when a remote command runs: local commands work without the client
    from understudy_client import Understudy

TASK_COLUMNS = ["id", "task_number", "type", "status", "createdAt", "notes"]
MESSAGE_COLUMNS = ["id", "msg_id", "event", "task_id", "status", "attempt_count", "created_at"]


def client(args: argparse.Namespace) -> Understudy:
    from understudy_client import Understudy

    if not args.api_key:
        raise SystemExit("error: set UNDERSTUDY_API_KEY or pass --api-key")
    return Understudy(args.url, args.api_key)


def read_text(path: str) -> str:
    """A file the command was given, or standard input for ``-``; one that is not text is an
    error that names it (one that cannot be opened is :func:`cli.main.main`'s)."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SystemExit(f"error: {path}: not UTF-8 text") from None


def _data(args: argparse.Namespace) -> str | None:
    if args.data_file:
        return read_text(args.data_file)
    return args.data


def tasks_create(api: Understudy, args: argparse.Namespace) -> Any:
    task = api.create_task(
        args.type, _data(args), files=args.file or (), idempotency_key=args.idempotency_key
    )
    return api.wait(task, timeout=args.timeout) if args.wait else task


def batch_rows(text: str, path: str, task_type: str | None) -> list[tuple[int, dict[str, Any]]]:
    """The tasks of a batch file (:mod:`shared.task_files`): CSV by its ``.csv`` name, else
    JSON lines; ``--type`` for the rows that name none."""
    try:
        return read_task_file(
            text, is_csv=path.lower().endswith(".csv"), task_type=task_type,
            choose_type="pass --type",
        )  # fmt: skip
    except TaskFileError as err:
        raise SystemExit(f"error: {err}") from err


def tasks_batch(api: Understudy, args: argparse.Namespace) -> Any:
    """Create a file's tasks, ``--size`` to a call, each call all or none with an
    Idempotency-Key made from its tasks: the same file sent again within a day, whole or after
    fixing a refused row in place, creates nothing that was already created."""
    from understudy_client import UnderstudyError

    if args.size < 1:
        raise SystemExit("error: --size must be at least 1")
    text = read_text(args.path)
    rows = batch_rows(text, args.path, args.type)
    created: list[Any] = []
    for start in range(0, len(rows), args.size):
        chunk = rows[start : start + args.size]
        tasks = [task for _number, task in chunk]
        digest = hashlib.sha256(json.dumps(tasks, sort_keys=True).encode()).hexdigest()[:40]
        try:
            batch = api.create_batch(tasks, idempotency_key=f"{args.key_prefix}-{digest}")
        except UnderstudyError as err:
            if created:
                done = rows[:start]
                print(f"created {len(created)} tasks (lines {done[0][0]} to {done[-1][0]});"
                      " sending the file again will not create them twice",
                      file=sys.stderr)  # fmt: skip
            if isinstance(err.details, list):  # tasks.3.member_id -> line 5 member_id
                err.details = name_lines(err.details, [number for number, _task in chunk])
            raise
        created += batch["data"]
        print(f"batch {batch['batch_id']}: lines {chunk[0][0]} to {chunk[-1][0]}"
              f" (understudy batches get {batch['batch_id']})", file=sys.stderr)  # fmt: skip
    if args.wait:
        return [api.wait(task, timeout=args.timeout) for task in created]
    return created


def tasks_list(api: Understudy, args: argparse.Namespace) -> Any:
    found = []
    for task in api.list_tasks(
        status=args.status or (), type=args.type or (), batch=args.batch,
        created_since=args.since, created_before=args.before,
    ):  # fmt: skip
        found.append(task)
        if len(found) >= args.limit:
            break
    return found


def tasks_trajectory(api: Understudy, args: argparse.Namespace) -> Any:
    trajectory = api.get_trajectory(args.id)
    if args.download:
        folder = Path(args.download)
        folder.mkdir(parents=True, exist_ok=True)
        for step in trajectory["steps"]:
            if step["screenshot"]:
                name = folder / f"step-{step['attempt']}-{step['seq']}.png"
                api.download_artifact(step["screenshot"]["id"], to=name)
    return trajectory["steps"] if not args.json else trajectory


def credentials_set(api: Understudy, args: argparse.Namespace) -> Any:
    password = args.password or os.environ.get("UNDERSTUDY_PORTAL_PASSWORD")
    if password is None:
        password = sys.stdin.readline().rstrip("\n")
    return api.set_credentials(args.portal, args.username, password, args.totp_secret)


# (group, command) -> (help, run, table columns or None for key: value lines)
COMMANDS: dict[tuple[str, str], tuple[str, Any, list[str] | None]] = {
    ("tasks", "create"): ("create a task", tasks_create, None),
    ("tasks", "batch"): (
        "create the tasks of a CSV or JSON-lines file (- for stdin), all of each call or none",
        tasks_batch, TASK_COLUMNS,
    ),
    ("tasks", "get"): ("show a task", lambda api, a: api.get_task(a.id), None),
    ("tasks", "list"): ("list tasks, newest first", tasks_list, TASK_COLUMNS),
    ("tasks", "cancel"): ("cancel a task", lambda api, a: api.cancel_task(a.id), None),
    ("tasks", "input"): (
        "give a waiting task its one-time code", lambda api, a: api.give_input(a.id, a.code), None
    ),
    ("tasks", "review"): (
        "approve or reject a task that is pending_review",
        lambda api, a: api.review_task(a.id, a.decision, note=a.note, reviewer=a.reviewer), None,
    ),
    ("tasks", "retry"): (
        "send a failed, canceled or completed_with_issues task again as a new task",
        lambda api, a: api.retry_task(a.id), None,
    ),
    ("tasks", "wait"): (
        "wait until a task is final", lambda api, a: api.wait(a.id, timeout=a.timeout), None
    ),
    ("tasks", "trajectory"): (
        "every step the agent took", tasks_trajectory,
        ["attempt", "seq", "name", "status", "duration_ms", "message"],
    ),
    ("tasks", "sop"): (
        "print the SOP version a task runs or ran", lambda api, a: api.get_task_sop(a.id), None
    ),
    ("batches", "get"): (
        "a batch: its tasks by status, and whether all have ended",
        lambda api, a: api.get_batch(a.id), None,
    ),
    ("batches", "wait"): (
        "wait until every task of a batch has ended",
        lambda api, a: api.wait_batch(a.id, timeout=a.timeout), None,
    ),
    ("sops", "list"): (
        "the active SOP of each type", lambda api, a: api.list_sops(),
        ["task_type", "version", "builtin", "portal", "title"],
    ),
    ("sops", "get"): (
        "print an SOP's YAML (the active one, or --version N)",
        lambda api, a: api.get_sop(a.type, a.version), None,
    ),
    ("sops", "validate"): (
        "check an SOP file (- for stdin) without storing it",
        lambda api, a: api.validate_sop(read_text(a.path)), None,
    ),
    ("sops", "push"): (
        "store an SOP file as the type's new version",
        lambda api, a: api.put_sop(a.type, read_text(a.path)), None,
    ),
    ("sops", "history"): (
        "the account's versions of a type's SOP, newest first: every one, page after page",
        lambda api, a: list(api.list_sop_versions(a.type)), ["version", "digest", "created_at"],
    ),
    ("sops", "revert"): ("go back to the built-in SOP", lambda api, a: api.revert_sop(a.type),
                         None),
    ("portals", "list"): (
        "the portals", lambda api, a: api.list_portals(),
        ["name", "base_url", "builtin", "has_credentials"],
    ),
    ("portals", "set"): (
        "register a portal's base URL (and the other origins its pages need)",
        lambda api, a: api.put_portal(a.name, a.base_url, allowed_origins=a.allow_origin),
        None,
    ),
    ("portals", "delete"): ("forget a portal", lambda api, a: api.delete_portal(a.name), None),
    ("credentials", "list"): (
        "portals with a login", lambda api, a: api.list_credentials(),
        ["portal", "username", "has_totp", "updated_at"],
    ),
    ("credentials", "set"): (
        "store a portal login (password from --password, UNDERSTUDY_PORTAL_PASSWORD or stdin)",
        credentials_set, ["portal", "username", "has_totp", "updated_at"],
    ),
    ("credentials", "delete"): (
        "delete a portal login", lambda api, a: api.delete_credentials(a.portal), None
    ),
    ("webhooks", "endpoint"): (
        "show the endpoint", lambda api, a: api.get_webhook_endpoint(), None
    ),
    ("webhooks", "set-url"): (
        "set the endpoint's URL", lambda api, a: api.update_webhook_endpoint(url=a.url_value),
        None,
    ),
    ("webhooks", "messages"): (
        "the message log, newest first",
        lambda api, a: list(api.list_webhook_messages(status=a.status, task_id=a.task_id,
                                                      since=a.since))[: a.limit],
        MESSAGE_COLUMNS,
    ),
    ("webhooks", "message"): (
        "one message with its attempts", lambda api, a: api.get_webhook_message(a.ref), None
    ),
    ("webhooks", "redeliver"): (
        "send a message again", lambda api, a: api.redeliver_webhook_message(a.ref), None
    ),
    ("webhooks", "recover"): (
        "queue again every failed message since a time",
        lambda api, a: {"count": api.recover_webhook_messages(a.since, a.until)}, None,
    ),
    ("webhooks", "test"): ("queue a ping", lambda api, a: api.test_webhook_endpoint(), None),
    ("webhooks", "rotate-secret"): (
        "a new signing secret (shown once)", lambda api, a: api.rotate_webhook_secret(), None
    ),
    ("settings", "get"): (
        "the account's settings: review_required_types, review_timeout_hours, retention_days",
        lambda api, a: api.get_settings(), None,
    ),
    ("settings", "set"): (
        "set the settings given (the others stay)",
        lambda api, a: api.update_settings(
            review_required_types=a.review_types, review_timeout_hours=a.review_timeout_hours,
            retention_days=a.retention_days,
        ), None,
    ),
}  # fmt: skip


def add_arguments(group: str, command: str, parser: argparse.ArgumentParser) -> None:
    """The positional arguments and options of one remote command."""
    if group == "tasks":
        if command == "create":
            parser.add_argument("type", help="check_eligibility, submit_claim, ...")
            parser.add_argument("--data", help="'key: value' lines")
            parser.add_argument("--data-file", help="a file of 'key: value' lines")
            parser.add_argument("--file", action="append", help="an attachment (repeatable)")
            parser.add_argument("--idempotency-key", default=None)
            parser.add_argument("--wait", action="store_true", help="wait until it is final")
        elif command == "batch":
            parser.add_argument("path", help="a .csv file, a JSON-lines file, or - for stdin")
            parser.add_argument("--type", help="the task type of rows that name none")
            parser.add_argument(
                "--size",
                type=int,
                default=100,
                help="tasks per call (at most the server's MAX_BATCH_TASKS)",
            )
            parser.add_argument(
                "--key-prefix",
                default="cli-batch",
                help="another prefix sends tasks already sent today again",
            )
            parser.add_argument("--wait", action="store_true", help="wait until all are final")
        elif command == "list":
            parser.add_argument("--status", action="append", help="repeatable")
            parser.add_argument("--type", action="append", help="repeatable")
            parser.add_argument("--batch", type=int, help="only this batch's tasks")
            parser.add_argument(
                "--since", metavar="TIME", help="created at or after (2026-12-01, or a time with"
                " its offset: 2026-12-01T08:00:00Z)",
            )  # fmt: skip
            parser.add_argument("--before", metavar="TIME", help="created before (as --since)")
            parser.add_argument("--limit", type=int, default=50, help="at most this many")
        else:
            parser.add_argument("id", type=int)
        if command == "input":
            parser.add_argument("code")
        if command == "review":
            parser.add_argument("decision", choices=["approve", "reject"])
            parser.add_argument("--note", help="why; a rejection's note goes into the task's notes")
            parser.add_argument("--reviewer", help="your name, recorded with the decision")
        if command == "trajectory":
            parser.add_argument("--download", metavar="DIR", help="save the screenshots here")
        if command in ("create", "wait", "batch"):
            parser.add_argument("--timeout", type=float, default=300.0, help="seconds")
    elif group == "batches":
        parser.add_argument("id", type=int)
        if command == "wait":
            parser.add_argument("--timeout", type=float, default=600.0, help="seconds")
    elif group == "sops":
        if command in ("get", "push", "history", "revert"):
            parser.add_argument("type")
        if command in ("validate", "push"):
            parser.add_argument("path", help="the YAML file, or - for stdin")
        if command == "get":
            parser.add_argument("--version", type=int, help="a stored version (see history)")
    elif group == "portals" and command in ("set", "delete"):
        parser.add_argument("name")
        if command == "set":
            parser.add_argument("base_url")
            parser.add_argument(
                "--allow-origin", action="append", default=[], metavar="ORIGIN",
                help="another origin the portal's pages need (a sign-in host, a CDN); repeat"
                " it for each; those not given are dropped",
            )  # fmt: skip
    elif group == "credentials" and command in ("set", "delete"):
        parser.add_argument("portal")
        if command == "set":
            parser.add_argument("--username", required=True)
            parser.add_argument("--password")
            parser.add_argument("--totp-secret")
    elif group == "webhooks":
        if command == "set-url":
            parser.add_argument("url_value", metavar="url")
        if command in ("message", "redeliver"):
            parser.add_argument("ref", help="the message's id or msg_id")
        if command == "messages":
            parser.add_argument("--status")
            parser.add_argument("--task-id", type=int)
            parser.add_argument("--since")
            parser.add_argument("--limit", type=int, default=50)
        if command == "recover":
            parser.add_argument("--since", required=True, help="ISO 8601 with a time zone")
            parser.add_argument("--until")
    elif group == "settings" and command == "set":
        parser.add_argument(
            "--retention-days", type=int, help="days an ended task is kept (1 to 3650)"
        )
        parser.add_argument(
            "--review-types",
            type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
            help="comma-separated task types a person approves ('' for none)",
        )
        parser.add_argument(
            "--review-timeout-hours",
            type=int,
            help="hours a task paused for review waits for a decision (1 to 2160)",
        )


# Commands whose answer is a document: printed as its YAML text unless --json is given.
_PRINTS_YAML = frozenset({("sops", "get"), ("tasks", "sop")})


def run(args: argparse.Namespace) -> int:
    from understudy_client import UnderstudyError

    _help, func, columns = COMMANDS[(args.command, args.action)]
    try:
        result = func(client(args), args)
    except UnderstudyError as err:
        print(f"error: {err.code}: {err.message}", file=sys.stderr)
        for detail in err.details if isinstance(err.details, list) else []:
            # an SOP's or a profile's problem names its line, as the API's answer does
            line = f"line {detail['line']} " if detail.get("line") else ""
            print(f"  {line}{detail.get('field') or '-'}: {detail.get('message')}", file=sys.stderr)
        return 1
    if isinstance(result, dict) and result.get("warnings") and not args.json:
        for warning in result["warnings"]:  # valid, but most likely a slip: said apart
            print(f"warning: {warning}", file=sys.stderr)
        result = {k: v for k, v in result.items() if k != "warnings"}
    if (args.command, args.action) in _PRINTS_YAML and not args.json:
        print(result["body"], end="")
    elif result is not None:
        show(result, columns, as_json=args.json)
    return 0
