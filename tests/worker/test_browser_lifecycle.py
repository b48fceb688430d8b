"""A browser's lifecycle: keyed by the credentials' version, kept in private folders that are
deleted, swept after a crash, and never outliving the process that owns it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from cli.local import SANDBOX_USERNAME
from tests.worker.support import QuietHandler, browser_pool, loopback_server, sandbox_runtime
from worker import runner, workspace
from worker.browser import egress_of, new_driver, quit_quietly, set_downloads
from worker.egress import Origin

pytestmark = pytest.mark.browser

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def workspace_dir(tmp_path):
    return tmp_path / "work"


@pytest.fixture
def browsers(settings, workspace_dir):
    pool = browser_pool(settings, workspace_dir=workspace_dir)
    yield pool
    pool.close()


@pytest.fixture
def rt(runtime, sandbox_url, workspace_dir):
    return sandbox_runtime(runtime, sandbox_url, workspace_dir=workspace_dir)


def _task(client, account) -> int:
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=account.headers
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["id"]


def _row(rt, task_id: int) -> dict:
    with rt.pool.connection() as conn:
        return conn.execute("SELECT * FROM tasks WHERE id = %s", (task_id,)).fetchone()


def test_storing_new_credentials_ends_the_signed_in_session(rt, client, account, browsers):
    # Given a task that signed in and left its browser signed in for the next task
    first = _task(client, account)
    runner.run_task(rt, first, browsers=browsers)
    assert _row(rt, first)["status"] == "completed", _row(rt, first)["notes"]

    # When the account stores a wrong password
    response = client.put(
        "/credentials/sandbox",
        json={"username": SANDBOX_USERNAME, "password": "not-the-password"},
        headers=account.headers,
    )
    assert response.status_code == 200

    # Then the next task starts a fresh browser, signs in with it, and is refused
    second = _task(client, account)
    runner.run_task(rt, second, browsers=browsers)
    row = _row(rt, second)
    assert row["status"] == "failed", row["notes"]
    assert "rejected the stored credentials" in row["notes"]
    assert browsers.started == 2


def test_a_task_works_in_a_private_folder_that_is_deleted_when_it_ends(
    rt, client, account, browsers, sandbox_url, workspace_dir
):
    requests.post(f"{sandbox_url}/__sandbox/faults", json={"slow_s": 0.5}, timeout=5)
    task_id = _task(client, account)
    seen: dict[str, object] = {}

    def look() -> None:
        deadline = time.monotonic() + 60
        # (until its subfolders are seen too: the folder is made a moment before them)
        while time.monotonic() < deadline and not {"files", "downloads"} <= set(
            seen.get("task_parts", ())  # type: ignore[call-overload]
        ):
            for folder in workspace_dir.glob(f"task-{task_id}-*"):
                with contextlib.suppress(FileNotFoundError):  # the task ended meanwhile
                    seen["task_mode"] = folder.stat().st_mode & 0o777
                    seen["task_parts"] = sorted(p.name for p in folder.iterdir())
                    seen["task"] = folder
            time.sleep(0.05)

    looker = threading.Thread(target=look)
    looker.start()
    runner.run_task(rt, task_id, browsers=browsers)
    looker.join()

    assert _row(rt, task_id)["status"] == "completed"
    assert seen["task_mode"] == 0o700
    assert {"files", "downloads"} <= set(seen["task_parts"])
    assert not Path(seen["task"]).exists()  # deleted when the task ended
    # The browser's profile lives in its own 0700 folder under the same root...
    [browser_folder] = workspace_dir.glob("browser-*")
    assert browser_folder.stat().st_mode & 0o777 == 0o700
    assert (browser_folder / "profile").is_dir()
    # ...which goes when the browser quits.
    browsers.close()
    assert list(workspace_dir.glob("browser-*")) == []


def test_a_starting_worker_sweeps_what_dead_processes_left(tmp_path):
    root, temp = tmp_path / "work", tmp_path / "tmp"
    temp.mkdir()
    # A folder of a process that is gone, and one of this (live) process
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = workspace.make_folder(root, "task-1")
    (dead / ".owner").write_text(json.dumps({"pid": int(gone.stdout), "start": "0"}))
    live = workspace.make_folder(root, "task-2")
    # Chromium's own leftovers: a profile nobody runs, and chromedriver scratch of a live pid
    hour_ago = time.time() - 3600
    for name in (".org.chromium.Chromium.abc123", f"scoped_dir{os.getpid()}_1"):
        (temp / name).mkdir()
        os.utime(temp / name, (hour_ago, hour_ago))
    (temp / ".org.chromium.Chromium.fresh1").mkdir()  # maybe a live browser's socket folder

    removed = workspace.sweep(root, temp_dir=temp)

    assert not dead.exists() and live.exists()
    assert not (temp / ".org.chromium.Chromium.abc123").exists()
    assert (temp / f"scoped_dir{os.getpid()}_1").exists()
    assert (temp / ".org.chromium.Chromium.fresh1").exists()
    assert len(removed) == 2


_OWNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from worker.browser import new_driver
    driver = new_driver(chromium_path=sys.argv[1], chromedriver_path=sys.argv[2],
                        workspace_dir=Path(sys.argv[3]))
    driver.get("about:blank")
    print(driver.service.process.pid, driver._understudy_fence.watchdog.pid, flush=True)
    time.sleep(600)
    """
)


def _browser_owner(settings, root: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _OWNER, settings.chromium_path, settings.chromedriver_path, root],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _wait_gone(pids: list[int], timeout_s: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in pids if _alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    state = workspace.process_start(pid)
    if state is None:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return stat[0] != "Z"  # a zombie has exited; only its parent's bookkeeping is left


@pytest.mark.faults
def test_killing_the_process_that_owns_a_browser_kills_the_browser(settings, tmp_path):
    # Given a process (as a prefork child is) that started a browser and holds it
    root = tmp_path / "work"
    owner = _browser_owner(settings, root)
    try:
        chromedriver, _watchdog = map(int, owner.stdout.readline().split())
        [folder] = root.glob("browser-*")
        before = workspace.processes_mentioning(str(folder))
        assert len(before) >= 3  # Chromium's browser, zygote, renderer... processes
        assert _alive(chromedriver)

        # When it is killed with SIGKILL (no chance to quit its browser)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)

        # Then chromedriver and every Chromium process of that browser die with it
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            after = [p for p in workspace.processes_mentioning(str(folder)) if _alive(p)]
            if not after and not _alive(chromedriver):
                break
            time.sleep(0.2)
        assert after == [] and not _alive(chromedriver)
        # And the next worker to start removes its folder
        assert folder in workspace.sweep(root, temp_dir=tmp_path)
        assert not folder.exists()
    finally:
        if owner.poll() is None:
            owner.kill()


@pytest.mark.faults
def test_a_starting_worker_kills_browsers_whose_owner_and_watchdog_died(settings, tmp_path):
    # Given a browser whose owner died and whose watchdog was killed first (nothing cleaned up)
    root = tmp_path / "work"
    owner = _browser_owner(settings, root)
    try:
        chromedriver, watchdog = map(int, owner.stdout.readline().split())
        [folder] = root.glob("browser-*")
        os.kill(watchdog, signal.SIGKILL)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        time.sleep(1)
        orphans = [p for p in workspace.processes_mentioning(str(folder)) if _alive(p)]
        assert orphans and _alive(chromedriver)  # the orphans this test is about

        # When a worker starts and sweeps
        workspace.sweep(root, temp_dir=tmp_path)

        # Then the orphaned chromedriver and Chromium are gone, and so is their folder
        assert _wait_gone([*orphans, chromedriver]) == []
        assert not folder.exists()
    finally:
        if owner.poll() is None:
            owner.kill()


def test_downloads_land_in_the_folder_the_task_gives(settings, tmp_path):
    # A page (on the allowed origin) that offers a file
    class Page(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/report":
                attachment = {"Content-Disposition": "attachment; filename=report.txt"}
                self.reply(200, b"remittance advice", attachment)
            else:
                self.reply(200, b"<a id=get href='/report'>report</a>")

    downloads = tmp_path / "task" / "downloads"
    downloads.mkdir(parents=True)
    with loopback_server(Page) as url:
        driver = new_driver(
            chromium_path=settings.chromium_path,
            chromedriver_path=settings.chromedriver_path,
            workspace_dir=tmp_path / "work",
        )
        try:
            egress_of(driver).allow([Origin.of(url, allow_private=True)])
            set_downloads(driver, downloads)
            driver.get(url)
            driver.find_element("id", "get").click()
            deadline = time.monotonic() + 10
            while not (downloads / "report.txt").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            quit_quietly(driver)
    assert (downloads / "report.txt").read_bytes() == b"remittance advice"


def test_the_sweep_runs_when_a_worker_process_starts(tmp_path, monkeypatch):
    from celery.signals import worker_process_init

    import worker.tasks  # noqa: F401 (connects the signal handlers)

    # Given the folder of a worker process that died
    root = tmp_path / "work"
    dead = workspace.make_folder(root, "task-7")
    (dead / ".owner").write_text(json.dumps({"pid": 2**22 + 1, "start": "0"}))
    monkeypatch.setenv("WORKSPACE_DIR", str(root))
    monkeypatch.setenv("BROWSER_SPARE", "false")  # this process is no worker: no browser

    # When Celery starts a worker process
    worker_process_init.send(sender=None)

    # Then the leftover is gone
    assert not dead.exists()


def test_a_browser_keeps_its_profile_and_temporary_files_in_its_own_folder(settings):
    # (Chromium's profile folders used to be left in /tmp, about 8 MB each.)
    # Short, outside pytest's per-worker folders: Chromium's sockets must fit in a socket path.
    with tempfile.TemporaryDirectory(prefix="w") as short:
        root = Path(short)
        driver = new_driver(
            chromium_path=settings.chromium_path,
            chromedriver_path=settings.chromedriver_path,
            workspace_dir=root,
        )
        try:
            [folder] = root.glob("browser-*")
            chromium = workspace.processes_mentioning(f"--user-data-dir={folder / 'profile'}")
            environ = Path(f"/proc/{driver.service.process.pid}/environ").read_bytes().split(b"\0")
            profile_files = list((folder / "profile").iterdir())
        finally:
            quit_quietly(driver)
        assert chromium  # Chromium runs on the profile in the browser's folder
        assert f"TMPDIR={folder / 'tmp'}".encode() in environ  # and its scratch files go there too
        assert profile_files
        assert not folder.exists()  # all of it deleted when the browser quits
