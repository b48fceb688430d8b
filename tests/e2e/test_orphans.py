"""No orphaned browsers: a prefork child killed with SIGKILL takes its browser with it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from worker import workspace

pytestmark = pytest.mark.faults

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def _claimed_by(runtime, task_id: int, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with runtime.pool.connection() as conn:
            row = conn.execute(
                "SELECT status, claimed_by FROM tasks WHERE id = %s", (task_id,)
            ).fetchone()
        if row["status"] == "running" and row["claimed_by"]:
            return int(row["claimed_by"].split(":")[1])  # "host:pid:nonce"
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} was never claimed")


def _live_browser(root: Path, child: int, timeout_s: float = 60) -> tuple[Path, int, list[int]]:
    """The child's browser folder, chromedriver pid and running browser processes.

    Looked up once the browser has loaded a page (renderers and all). A browser the child
    replaced meanwhile (a first attempt that failed on a loaded machine) has no processes left,
    so the lookup goes on until a folder with a live browser turns up.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for folder in root.glob(f"browser-{child}-*"):
            owner = workspace.read_owner(folder) or {}
            if owner.get("driver_pgid"):
                chromedriver = int(owner["driver_pgid"])
                processes = _browser_processes(folder, chromedriver)
                if len(processes) >= 4:
                    return folder, chromedriver, processes
        time.sleep(0.1)
    raise AssertionError(f"no live browser of process {child} under {root}")


def _wait_for_a_step(runtime, task_id: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with runtime.pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM trajectory_steps WHERE task_id = %s", (task_id,)
            ).fetchone()
        if row["n"]:
            return
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} recorded no step")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited


def _browser_processes(folder: Path, chromedriver: int) -> list[int]:
    pids = [p for p in workspace.processes_mentioning(str(folder)) if _running(p)]
    return pids + ([chromedriver] if _running(chromedriver) else [])


def test_killing_a_prefork_child_kills_its_chromedriver_and_chromium(
    e2e, runtime, make_account, receiver
):
    # Given a prefork child running a task in its browser
    e2e.sandbox_faults(slow_s=1.0, modal="never")
    account = make_account(webhook_url=receiver.url)
    task = e2e.post_task(account, "check_eligibility", JANE)
    child = _claimed_by(runtime, task["id"])
    _wait_for_a_step(runtime, task["id"])
    folder, chromedriver, before = _live_browser(e2e.workspace_dir, child)

    # When the child is killed with SIGKILL
    os.kill(child, signal.SIGKILL)

    # Then its chromedriver and every Chromium process of its browser are gone within seconds
    deadline = time.monotonic() + 15
    after = before
    while after and time.monotonic() < deadline:
        time.sleep(0.2)
        after = _browser_processes(folder, chromedriver)
    print(f"browser processes of the killed child: {len(before)} before, {len(after)} after")
    assert after == []

    # And the task is retried by another child and completes
    e2e.sandbox_faults(slow_s=0)
    final = e2e.wait_for_task(account, task["id"], {"completed", "failed"}, timeout_s=120)
    assert final["status"] == "completed", final["notes"]
