"""The `understudy` remote commands against the real API served on a loopback port."""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.openapi import TASK_EXAMPLES
from cli.main import build_parser, main
from cli.remote import COMMANDS
from tests.conftest import ServedApp

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "understudy")


@pytest.fixture
def remote(app, account, monkeypatch) -> Iterator[str]:
    server = ServedApp(app)
    monkeypatch.setenv("UNDERSTUDY_URL", server.url)
    monkeypatch.setenv("UNDERSTUDY_API_KEY", account.api_key)
    yield server.url
    server.close()


def _json(capsys, *argv: str):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_tasks_create_get_list_cancel_wait_and_trajectory(remote, capsys):
    created = _json(capsys, "tasks", "create", "check_eligibility",
                    "--data", TASK_EXAMPLES["check_eligibility"])  # fmt: skip
    assert created["type"] == "check_eligibility"
    task_id = str(created["id"])
    assert _json(capsys, "tasks", "get", task_id)["id"] == created["id"]
    assert [t["id"] for t in _json(capsys, "tasks", "list", "--type", "check_eligibility")] == [
        created["id"]
    ]
    assert _json(capsys, "tasks", "list", "--since", "2000-01-01", "--before", "2000-01-02") == []
    assert len(_json(capsys, "tasks", "list", "--since", "2000-01-01")) == 1
    assert _json(capsys, "tasks", "cancel", task_id)["status"] == "canceled"
    assert _json(capsys, "tasks", "wait", task_id, "--timeout", "5")["status"] == "canceled"
    assert _json(capsys, "tasks", "trajectory", task_id)["steps"] == []

    assert main(["tasks", "list"]) == 0  # a table without --json
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "TASK_NUMBER", "TYPE", "STATUS", "CREATEDAT", "NOTES"]
    assert out[1].split()[:4] == [task_id, "1", "check_eligibility", "canceled"]

    # errors print the code and each field, and exit 1
    assert main(["tasks", "create", "check_eligibility", "--data", "member_id: W1"]) == 1
    err = capsys.readouterr().err
    assert "validation_failed" in err and "dob:" in err


def test_tasks_batch_sends_a_csv_once_and_names_bad_rows_by_line(remote, capsys, tmp_path):
    # given a clinic's CSV export: a header row, one row per check, the type given by --type
    sheet = tmp_path / "monday.csv"
    sheet.write_text(
        "Member ID,Patient,DOB\n"
        "W100000001,Jane Doe,1990-01-15\n"
        "W200000002,John Roe,1985-06-30\n"
        "W300000003,Ann Smith,1970-02-02\n"
    )
    base = ["tasks", "batch", str(sheet), "--type", "check_eligibility", "--size", "2"]
    created = _json(capsys, *base)
    # then each row is a task, in order, with the row's cells as its data
    assert [t["task_number"] for t in created] == [1, 2, 3]
    assert [json.loads(t["data"])["Member ID"] for t in created] == [
        "W100000001",
        "W200000002",
        "W300000003",
    ]
    assert "John Roe" in created[1]["instructions"]
    # in two calls of at most two, each a batch named on stderr that can be read back
    assert main([*base, "--json"]) == 0  # sent again: the same tasks, created once
    out = capsys.readouterr()
    assert json.loads(out.out) == created
    assert "batch 1: lines 2 to 3" in out.err and "batch 2: lines 4 to 4" in out.err
    batch = _json(capsys, "batches", "get", "2")
    assert batch["task_ids"] == [created[2]["id"]] and batch["size"] == 1
    # and sending the same file again creates nothing twice
    assert _json(capsys, *base) == created
    assert len(_json(capsys, "tasks", "list")) == 3
    # and each batch's tasks are listed by its id
    first = _json(capsys, "tasks", "list", "--batch", "1")
    assert [t["id"] for t in first] == [created[1]["id"], created[0]["id"]]

    # a file with a bad row: refused whole, the row named by its line in the file
    sheet.write_text(
        "type,member_id,patient,dob\n"
        "check_eligibility,W100000001,Jane Doe,1990-01-15\n"
        "check_eligibility,W100000001,,1990-01-15\n"
        "check_claim_status,,,\n"
    )
    assert main(["tasks", "batch", str(sheet)]) == 1
    err = capsys.readouterr().err
    assert "2 of the 3 tasks are not valid" in err
    assert "line 3 patient:" in err and "line 4 claim_number or member_id:" in err
    assert len(_json(capsys, "tasks", "list")) == 3

    # a file that holds no task, a row with no type, a call size of none
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    for argv, says in (
        (["tasks", "batch", str(empty)], "holds no tasks"),
        (["tasks", "batch", str(sheet.with_name("typeless.csv"))], "no task type on line 2"),
        (["tasks", "batch", str(sheet), "--size", "0"], "--size must be at least 1"),
    ):
        sheet.with_name("typeless.csv").write_text("member_id\nW100000001\n")
        with pytest.raises(SystemExit, match=says):
            main(argv)

    # JSON lines from stdin, each naming its type
    lines = "\n".join(json.dumps({"type": t, "data": TASK_EXAMPLES[t]})
                      for t in ("check_claim_status", "submit_appeal"))  # fmt: skip
    piped = subprocess.run(
        [CLI, "tasks", "batch", "-", "--json"], input=lines, capture_output=True, text=True,
        timeout=60, check=False, env={**os.environ},
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert [t["type"] for t in json.loads(piped.stdout)] == ["check_claim_status", "submit_appeal"]


def test_sops_portals_credentials_and_webhooks(remote, capsys, tmp_path):
    body = _json(capsys, "sops", "get", "check_eligibility")["body"]
    sop = tmp_path / "sop.yaml"
    sop.write_text(body.replace("title:", "title: Mine -", 1))
    assert _json(capsys, "sops", "validate", str(sop))["valid"] is True
    assert _json(capsys, "sops", "push", "check_eligibility", str(sop))["version"] == 1
    assert [h["version"] for h in _json(capsys, "sops", "history", "check_eligibility")] == [1]
    created = _json(capsys, "tasks", "create", "check_eligibility",
                    "--data", TASK_EXAMPLES["check_eligibility"])  # fmt: skip
    sop.write_text(body.replace("title:", "title: Mine again -", 1))
    assert _json(capsys, "sops", "push", "check_eligibility", str(sop))["version"] == 2
    # an older version, and the one a task runs, print as the YAML they were stored as
    assert main(["sops", "get", "check_eligibility", "--version", "1"]) == 0
    first = capsys.readouterr().out
    assert first == body.replace("title:", "title: Mine -", 1)
    assert main(["tasks", "sop", str(created["id"])]) == 0
    assert capsys.readouterr().out == first
    sop.write_text("task_type: check_eligibility\n")
    assert main(["sops", "validate", str(sop)]) == 1
    assert "validation_failed" in capsys.readouterr().err
    # each problem names its line, as the API's answer does
    sop.write_text(body.replace("- click: {button: Search}", "- clik: {button: Search}"))
    line = body.splitlines().index("  - click: {button: Search}") + 1
    assert main(["sops", "validate", str(sop)]) == 1
    assert f"  line {line} steps[" in capsys.readouterr().err
    # a valid document that reads a name nothing gives passes, and says so apart
    sop.write_text(body.replace("{{ dob | us_date }}", "{{ dbo | us_date }}"))
    assert main(["sops", "validate", str(sop)]) == 0
    out, err = capsys.readouterr()
    assert "valid" in out and "warnings" not in out
    assert err.startswith("warning: line ") and "did you mean 'dob'?" in err

    assert _json(capsys, "portals", "set", "acme", "https://portal.acme.test/")["name"] == "acme"
    origins = _json(capsys, "portals", "set", "acme", "https://portal.acme.test/",
                    "--allow-origin", "https://login.acme.test",
                    "--allow-origin", "https://cdn.acme.test")["allowed_origins"]  # fmt: skip
    assert origins == ["https://cdn.acme.test", "https://login.acme.test"]
    assert "acme" in [p["name"] for p in _json(capsys, "portals", "list")]
    made = _json(capsys, "credentials", "set", "acme", "--username", "me", "--password", "pw")
    assert made == {**made, "portal": "acme", "username": "me", "has_totp": False}

    assert _json(capsys, "webhooks", "set-url", "http://127.0.0.1:9/hook")["url"].endswith("/hook")
    ping = _json(capsys, "webhooks", "test")
    assert [m["msg_id"] for m in _json(capsys, "webhooks", "messages")] == [ping["msg_id"]]
    assert _json(capsys, "webhooks", "message", ping["msg_id"])["event"] == "ping"
    assert main(["webhooks", "redeliver", ping["msg_id"]]) == 1  # still pending: 409
    assert "message_pending" in capsys.readouterr().err
    recovered = _json(capsys, "webhooks", "recover", "--since", "2020-01-01T00:00:00Z")
    assert recovered == {"count": 0}


def test_help_is_plain_text_and_a_key_comes_from_the_environment(remote, account):
    env = {"PATH": os.environ["PATH"], "UNDERSTUDY_URL": remote,
           "UNDERSTUDY_API_KEY": account.api_key}  # fmt: skip
    shown = subprocess.run([CLI, "--help"], capture_output=True, text=True, env=env, check=True)
    assert "`" not in shown.stdout and "tasks" in shown.stdout and "webhooks" in shown.stdout
    listed = subprocess.run(
        [CLI, "portals", "list", "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["name"] == "sandbox"
    refused = subprocess.run(
        [CLI, "portals", "list"], capture_output=True, text=True, check=False,
        env={**env, "UNDERSTUDY_API_KEY": "us_wrong"},
    )  # fmt: skip
    assert refused.returncode == 1 and "unauthorized" in refused.stderr


def test_help_names_every_command_as_local_or_remote():
    # given every command the parser has, and which of them call the API
    parser = build_parser()
    (commands,) = [a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    remote = {group for group, _ in COMMANDS}
    # when the help is shown, then each command is named in the sentence of its kind
    local_part, remote_part = " ".join(parser.format_help().split()).split("Remote commands")
    for name in commands:
        assert re.search(rf"[ :]{name}[,.;]", remote_part if name in remote else local_part), name
    assert set(commands) - remote == {"accounts", "keys", "users", "migrate", "scheduler",
                                      "sandbox", "run"}  # fmt: skip


def test_a_file_that_cannot_be_read_is_named_with_why_and_nothing_is_sent(remote, tmp_path):
    # given a folder, a binary file and a name that is no file
    binary = tmp_path / "sop.yaml"
    binary.write_bytes(b"\xff\xfe task_type")
    missing = str(tmp_path / "missing.csv")
    env = {"PATH": os.environ["PATH"], "UNDERSTUDY_URL": remote,
           "UNDERSTUDY_API_KEY": os.environ["UNDERSTUDY_API_KEY"]}  # fmt: skip
    for argv, says in [
        (["sops", "push", "check_eligibility", missing], f"{missing}: No such file or directory"),
        (["sops", "validate", str(tmp_path)], f"{tmp_path}: Is a directory"),
        (["sops", "validate", str(binary)], f"{binary}: not UTF-8 text"),
        (["tasks", "batch", missing, "--type", "check_eligibility"], f"{missing}: No such file"),
        (["tasks", "create", "check_eligibility", "--data-file", missing], f"{missing}: No such"),
        (["tasks", "create", "check_eligibility", "--data", "member_id: W100000001",
          "--file", missing], f"{missing}: No such file"),
    ]:  # fmt: skip
        # when a command is given it
        done = subprocess.run([CLI, *argv], capture_output=True, text=True, env=env, check=False)
        # then it says which file and why, in one line, and exits 1
        assert done.returncode == 1, (argv, done.stderr)
        assert done.stderr.strip() == f"error: {says}" or done.stderr.startswith(f"error: {says}")
        assert "Traceback" not in done.stderr, done.stderr
    # and no task was created
    listed = subprocess.run(
        [CLI, "tasks", "list", "--json"], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(listed.stdout) == []


def test_an_address_that_is_not_the_apis_is_an_error_saying_so(remote, capsys, monkeypatch):
    for url, says in [
        (remote.removeprefix("http://"), "connection_error: GET 127.0.0.1:"),  # no scheme
        (f"{remote}/console", "invalid_response: GET "),  # a page, not the API
        (f"{remote}/console", "redirected: POST "),  # the console sends its sign-in page
    ]:
        monkeypatch.setenv("UNDERSTUDY_URL", url)
        argv = ["tasks", "list"] if "GET" in says else ["tasks", "cancel", "1"]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: {says}"), err


def test_ctrl_c_stops_a_wait_quietly(app, account, monkeypatch, capsys):
    # Given a task no worker runs, and the CLI waiting for it (seen reading it: Ctrl-C comes
    # while it waits, not while Python starts)
    reads: list[str] = []

    def counted(environ, start_response):
        reads.append(environ["REQUEST_METHOD"])
        return app(environ, start_response)

    server = ServedApp(counted)
    monkeypatch.setenv("UNDERSTUDY_URL", server.url)
    monkeypatch.setenv("UNDERSTUDY_API_KEY", account.api_key)
    try:
        created = _json(capsys, "tasks", "create", "check_eligibility",
                        "--data", TASK_EXAMPLES["check_eligibility"])  # fmt: skip
        reads.clear()
        waiting = subprocess.Popen(
            [CLI, "tasks", "wait", str(created["id"]), "--timeout", "120"],
            env={**os.environ}, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while reads.count("GET") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reads.count("GET") >= 2, reads
        # When Ctrl-C is pressed
        waiting.send_signal(signal.SIGINT)
        _, err = waiting.communicate(timeout=30)
    finally:
        server.close()
    # Then it stops with the shell's status for it and one word, not a traceback
    assert waiting.returncode == 130 and err.strip() == "interrupted", err


def test_shared_imports_no_process_package_and_no_cli():
    forbidden = {"api", "worker", "dispatcher", "scheduler", "sandbox", "cli"}
    found = []
    for path in (ROOT / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert found == []
