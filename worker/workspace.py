"""Private folders on the worker's disk: one per task, one per browser, and the sweep after a crash.

Everything lives under one worker-owned root (``WORKSPACE_DIR``): ``task-*`` folders hold a
task's files and its browser downloads, ``browser-*`` folders hold a Chromium profile and the
temporary files of Chromium and chromedriver. Each folder is mode 0700 and records the process
that owns it (pid and start time, so a reused pid is not mistaken for the owner). A folder is
deleted when its task ends or its browser quits; a worker that starts deletes the folders of
owners that are gone, kills the browsers still running from them, and removes Chromium's own
leftovers from the system temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_OWNER_FILE = ".owner"
_LEFTOVER_AGE_S = 600.0
# Chromium's and chromedriver's own temporary profiles and scratch folders.
_CHROMIUM_LEFTOVERS = re.compile(r"^(\.org\.chromium\.Chromium\.|scoped_dir)")


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_alive(owner: dict) -> bool:
    return process_start(int(owner.get("pid", 0))) == owner.get("start")


def make_folder(root: Path, prefix: str, **extra: object) -> Path:
    """A new 0700 folder under ``root`` owned by this process."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=root))
    folder.chmod(0o700)  # mkdtemp already does; said again because it is the point
    write_owner(folder, **extra)
    return folder


def write_owner(folder: Path, **extra: object) -> None:
    owner = {"pid": os.getpid(), "start": process_start(os.getpid()), **extra}
    (folder / _OWNER_FILE).write_text(json.dumps(owner))


def read_owner(folder: Path) -> dict | None:
    try:
        return json.loads((folder / _OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def task_workspace(root: Path, task_id: int) -> Iterator[Path]:
    """A private folder for one task (files, downloads), deleted when the task ends."""
    folder = make_folder(root, f"task-{task_id}")
    try:
        yield folder
    finally:
        remove(folder)


def processes_mentioning(text: str) -> list[int]:
    """Pids of this user's processes whose command line contains ``text``."""
    found = []
    uid = os.getuid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found


def kill_browser(folder: Path, owner: dict | None) -> None:
    """SIGKILL what is left of a browser: chromedriver's process group and every process that
    names the folder (Chromium and its helpers all carry the profile path)."""
    group = (owner or {}).get("driver_pgid")
    if group and process_start(int(group)) == (owner or {}).get("driver_start"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(group), signal.SIGKILL)
    for pid in processes_mentioning(str(folder)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def sweep(root: Path, *, temp_dir: Path | None = None) -> list[Path]:
    """Delete the folders of dead owners under ``root`` (killing their browsers first), and
    Chromium's leftovers in the temporary folder that no running process uses. Returns what
    was removed."""
    removed: list[Path] = []
    if root.is_dir():
        for folder in root.iterdir():
            if not folder.is_dir():
                continue
            owner = read_owner(folder)
            if owner is not None and _owner_alive(owner):
                continue
            if owner is None and not _stale_unowned(folder):
                continue  # being created right now: the owner file is written just after mkdir
            if folder.name.startswith("browser-"):
                kill_browser(folder, owner)
            remove(folder)
            removed.append(folder)
    removed += _sweep_chromium_temp(temp_dir or Path(tempfile.gettempdir()))
    if removed:
        log.info("swept %d leftover folders", len(removed))
    return removed


def _stale_unowned(folder: Path) -> bool:
    try:
        return time.time() - folder.stat().st_mtime > 60
    except OSError:
        return False


def _sweep_chromium_temp(temp_dir: Path) -> list[Path]:
    removed: list[Path] = []
    try:
        entries = list(temp_dir.iterdir())
    except OSError:
        return removed
    uid = os.getuid()
    for entry in entries:
        if not _CHROMIUM_LEFTOVERS.match(entry.name):
            continue
        try:
            if entry.stat().st_uid != uid or not entry.is_dir():
                continue
        except OSError:
            continue
        if _in_use(entry) or _recent(entry):
            continue
        remove(entry)
        removed.append(entry)
    return removed


def _recent(entry: Path) -> bool:
    # Chromium also keeps a socket folder here that no command line names; a live browser
    # touches it, so only folders left alone for a while are taken for leftovers.
    try:
        return time.time() - entry.stat().st_mtime < _LEFTOVER_AGE_S
    except OSError:
        return True


def _in_use(entry: Path) -> bool:
    """Whether a live process still uses a Chromium temporary folder."""
    # chromedriver names its scratch folders scoped_dir<its pid>_<n>.
    match = re.match(r"scoped_dir(\d+)_", entry.name)
    if match and process_start(int(match.group(1))) is not None:
        return True
    # A profile folder is on the command line of the Chromium that uses it.
    return bool(processes_mentioning(str(entry)))
