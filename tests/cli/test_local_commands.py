"""The `understudy` command: accounts and keys, against the real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from shared import embedded
from tests.conftest import free_port

CLI = str(Path(sys.executable).parent / "understudy")


def _run(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _env(settings) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": settings.database_url,
        "UNDERSTUDY_RUN_DIR": str(settings.run_dir),
        "WEBHOOK_ALLOW_PRIVATE": "true",
    }
    # the command runs the code under test, where the tests were pointed at it
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def test_accounts_create_prints_a_working_key_and_stores_secrets_encrypted(
    runtime, settings, client
):
    result = _run(
        [
            "accounts",
            "create",
            "--name",
            "Clinic",
            "--webhook-url",
            "http://127.0.0.1:9/h",
            "--sandbox",
            "--json",
        ],
        _env(settings),
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created) == {"account_id", "api_key", "webhook_secret"}
    assert created["webhook_secret"].startswith("whsec_")
    # the key works against the API
    response = client.get("/tasks", headers={"Authorization": f"Bearer {created['api_key']}"})
    assert response.status_code == 200
    # and neither the key nor the sandbox password is stored in clear
    with runtime.pool.connection() as conn:
        key_row = conn.execute("SELECT prefix, digest FROM api_keys").fetchone()
        cred_row = conn.execute("SELECT username, secret_token FROM portal_credentials").fetchone()
    assert created["api_key"].startswith(key_row["prefix"])
    assert key_row["digest"] != created["api_key"] and len(key_row["digest"]) == 64
    assert cred_row["username"] == "provider@sandbox"
    assert b"sandbox-pass-1" not in bytes(cred_row["secret_token"])


def test_keys_create_and_revoke(runtime, settings, client, account):
    created = _run(["keys", "create", "--account", str(account.id), "--json"], _env(settings))
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["api_key"]
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/tasks", headers=headers).status_code == 200
    revoked = _run(["keys", "revoke", key[:15]], _env(settings))
    assert revoked.returncode == 0, revoked.stderr
    # refused as soon as the API hears of it (it may have remembered the key): milliseconds
    deadline = time.monotonic() + 5
    while client.get("/tasks", headers=headers).status_code != 401:
        assert time.monotonic() < deadline, "the revoked key kept working"
        time.sleep(0.01)
    assert _run(["keys", "revoke", key[:15]], _env(settings)).returncode == 2
    assert _run(["keys", "create", "--account", "999999"], _env(settings)).returncode == 2


def test_a_refused_webhook_url_is_rejected_with_the_reason(settings):
    env = {**_env(settings), "WEBHOOK_ALLOW_PRIVATE": "false"}
    result = _run(["accounts", "create", "--name", "X", "--webhook-url", "http://10.0.0.1/h"], env)
    assert result.returncode == 2
    assert "refused" in result.stderr


def test_with_no_environment_the_cli_joins_the_running_embedded_database(tmp_path):
    # given `make run` holding the embedded Postgres under ./.run of a checkout
    url, server = embedded.start_postgres(tmp_path / ".run" / "pg", stop_on_exit=True)
    try:
        from shared.db import migrate

        migrate(url)
        # when the CLI runs in that checkout with no environment variables at all
        result = _run(
            ["accounts", "create", "--name", "Same DB", "--json"],
            {"PATH": os.environ["PATH"]},
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        account_id = json.loads(result.stdout)["account_id"]
        # then the account is in the database the stack uses, and the stack's server still runs
        with psycopg.connect(url) as conn:
            name = conn.execute("SELECT name FROM accounts WHERE id = %s", (account_id,)).fetchone()
        assert name == ("Same DB",)
    finally:
        server.cleanup()


def test_accounts_list_and_keys_list_show_prefixes_never_keys(runtime, settings, account):
    listed = _run(["accounts", "list", "--json"], _env(settings))
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["name"], row["share"], row["live_keys"]) == (
        account.id,
        "Acme Health",
        1,
        1,
    )
    table = _run(["accounts", "list"], _env(settings)).stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "SHARE", "LIVE_KEYS", "CREATED_AT"]
    assert table[1].split()[:3] == [str(account.id), "Acme", "Health"]

    keys = _run(["keys", "list", "--account", str(account.id), "--json"], _env(settings))
    [key] = json.loads(keys.stdout)
    assert account.api_key.startswith(key["prefix"]) and key["prefix"] != account.api_key
    assert account.api_key not in _run(["keys", "list"], _env(settings)).stdout


def test_accounts_share_sets_the_weight_the_listing_shows(runtime, settings, account):
    env = _env(settings)
    result = _run(["accounts", "share", str(account.id), "3"], env)
    assert result.returncode == 0, result.stderr
    [row] = json.loads(_run(["accounts", "list", "--json"], env).stdout)
    assert (row["id"], row["share"]) == (account.id, 3)


def test_accounts_share_refuses_a_weight_out_of_range_or_no_account(runtime, settings, account):
    env = _env(settings)
    for share in ("0", "101", "-1"):
        refused = _run(["accounts", "share", str(account.id), share], env)
        assert refused.returncode == 2
        assert "share must be from 1 to 100" in refused.stderr
    missing = _run(["accounts", "share", str(account.id + 1000), "2"], env)
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        f"error: no account {account.id + 1000}",
    )
    # and the weight is as it was
    with runtime.pool.connection() as conn:
        row = conn.execute("SELECT share FROM accounts WHERE id = %s", (account.id,)).fetchone()
    assert row["share"] == 1


@pytest.mark.parametrize("command", [["keys", "list"], ["users", "list"]])
def test_listing_an_account_that_does_not_exist_says_so_not_an_empty_list(
    runtime, settings, account, command
):
    env = _env(settings)
    missing = _run([*command, "--account", str(account.id + 1000)], env)
    assert (missing.returncode, missing.stderr.strip(), missing.stdout) == (
        2,
        f"error: no account {account.id + 1000}",
        "",
    )
    assert _run([*command, "--account", str(account.id)], env).returncode == 0


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("127.0.0.1:{port}/understudy", "Connection refused"),  # nothing listens there
        ("[::1/understudy", "IPv6 host address in URI"),  # malformed: libpq quotes it whole
    ],
)
def test_a_database_that_cannot_be_used_is_an_error_saying_why_without_its_password(
    settings, tmp_path, url, says
):
    # Given a DATABASE_URL that cannot be used, with a password in it
    env = {
        **_env(settings),
        "DATABASE_URL": "postgresql://ops:hunter2-secret@" + url.format(port=free_port()),
        "DB_POOL_TIMEOUT_S": "1",
        "UNDERSTUDY_RUN_DIR": str(tmp_path),
    }
    for argv in (["migrate"], ["accounts", "list"], ["keys", "create", "--account", "1"]):
        # When a local command runs
        done = _run(argv, env)
        # Then it says the database cannot be used and why, in libpq's words, and exits 1;
        # neither that line nor the pool's log of its attempts shows the password
        assert done.returncode == 1, (argv, done.stderr)
        last = done.stderr.strip().split("error: ", 1)[-1]
        assert last.startswith("the database (DATABASE_URL) cannot be used: "), done.stderr
        assert says in last, done.stderr
        assert "Traceback" not in done.stderr and "hunter2" not in done.stderr, done.stderr


def test_a_database_lost_during_a_command_is_an_error_saying_nothing_changed(
    runtime, settings, account
):
    # Given a key's creation held up by a lock on the keys' table
    env = {**_env(settings), "PGAPPNAME": "cli-under-test"}
    with psycopg.connect(settings.database_url) as holder:
        holder.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        command = subprocess.Popen(
            [CLI, "keys", "create", "--account", str(account.id)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            # When its connection is ended while it waits (a failover, a restart)
            with psycopg.connect(settings.database_url, autocommit=True) as admin:
                deadline = time.monotonic() + 60
                ended = None
                while ended is None and time.monotonic() < deadline:
                    ended = admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND application_name = 'cli-under-test'"
                    ).fetchone()
                    time.sleep(0.1)
                assert ended is not None, "the command never waited for the lock"
            out, err = command.communicate(timeout=60)
        finally:
            command.kill()
        holder.rollback()

    # Then it says why in one line, that nothing changed, and exits 1, printing no key
    assert command.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: the database (DATABASE_URL) cannot be used: "), err
    assert last.endswith("(the command stopped; nothing changed)") and "Traceback" not in err, err
    assert out == ""
    with runtime.pool.connection() as conn:
        keys = conn.execute("SELECT count(*) AS n FROM api_keys WHERE account_id = %s",
                            (account.id,)).fetchone()  # fmt: skip
    assert keys["n"] == 1  # the account's first key only
