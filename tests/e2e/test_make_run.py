"""`make run` on the embedded servers: Ctrl-C stops it all, and a rerun keeps the data."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import free_port

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(BIN / "understudy"), "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise AssertionError(f"{url} never answered:\n{log.read_text()[-3000:]}")


def _interrupt(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_ctrl_c_stops_every_process_and_a_second_run_finds_its_data(tmp_path):
    # given the stack on its embedded Postgres and Redis under a run dir of its own
    ports = {"PORT": free_port(), "SANDBOX_PORT": free_port(), "EMBEDDED_REDIS_PORT": free_port()}
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "UNDERSTUDY_RUN_DIR": str(tmp_path / ".run"),
        **{name: str(port) for name, port in ports.items()},
        "SANDBOX_URL": f"http://127.0.0.1:{ports['SANDBOX_PORT']}",
    }
    log = tmp_path / "run.log"
    api = f"http://127.0.0.1:{ports['PORT']}"
    process = _start(env, log)
    _wait_up(f"{api}/healthz", process, log)
    created = subprocess.run(
        [str(BIN / "understudy"), "accounts", "create", "--name", "Kept", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = json.loads(created.stdout)["api_key"]
    assert requests.get(f"{api}/tasks", headers={"Authorization": f"Bearer {key}"}).ok
    # when it is interrupted, as by Ctrl-C
    _interrupt(process)
    # then nothing it started is left: no API, no sandbox, no Redis, no Postgres
    for port in ports.values():
        assert not _port_open(port), f"port {port} still open"
    assert not (tmp_path / ".run" / "pg" / "postmaster.pid").exists()
    # and a second run finds the account made during the first
    again = _start(env, log)
    try:
        _wait_up(f"{api}/healthz", again, log)
        response = requests.get(f"{api}/tasks", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
    finally:
        _interrupt(again)
