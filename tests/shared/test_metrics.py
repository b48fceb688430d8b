"""Multiprocess metrics: processes of one host add up; a dead one's counts stay, its gauges go."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import generate_latest

from shared import metrics
from shared.settings import load_settings
from tests.scrape import parse, value

ROOT = Path(__file__).resolve().parents[2]

# What a worker process does: a browser opened, a task counted; then it waits or ends.
PROCESS = """
import sys
from shared import metrics
metrics.BROWSERS.inc()
metrics.WORKER_PROCESSES.labels("agent").set(1)
metrics.TASKS_CREATED.labels(metrics.type_label("check_eligibility")).inc()
metrics.TASKS_CREATED.labels(metrics.type_label("an_accounts_own_type")).inc()
print("ready", flush=True)
if sys.argv[1] == "stay":
    sys.stdin.read()
"""


def _start(folder: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    process = subprocess.Popen(
        [sys.executable, "-c", PROCESS, mode],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def test_a_dead_process_keeps_its_counts_but_not_its_live_gauges(tmp_path):
    # given two worker processes writing to one folder; one is killed without a goodbye
    folder = tmp_path / "metrics"
    living = _start(folder, "stay")
    dead = _start(folder, "stay")
    dead.kill()
    dead.wait()
    try:
        # when the folder is scraped
        settings = load_settings({}, prometheus_multiproc_dir=folder)
        samples = parse(generate_latest(metrics.written_registry(settings)).decode())
        # then counters add up over both, the dead one included
        created = "understudy_tasks_created_total"
        assert value(samples, created, type="check_eligibility") == 2
        # and an account's own type is counted as "custom", never by its name
        assert value(samples, created, type="custom") == 2
        assert value(samples, created, type="an_accounts_own_type") == 0
        # and the live gauges count only the living process
        assert value(samples, "understudy_browsers") == 1
        assert value(samples, "understudy_worker_processes", queue="agent") == 1
        assert not list(folder.glob(f"gauge_livesum_{dead.pid}.db"))
    finally:
        living.kill()
        living.wait()


def test_a_process_that_exits_is_marked_dead_by_its_parent(tmp_path):
    # given a process that wrote a live gauge and ended (a gunicorn worker, a Celery child)
    folder = tmp_path / "metrics"
    ended = _start(folder, "exit")
    ended.wait()
    # when its parent marks it dead (gunicorn's child_exit hook)
    metrics.mark_process_dead(ended.pid, folder)
    # then its live gauge files are gone
    assert not list(folder.glob(f"gauge_live*_{ended.pid}.db"))
    assert list(folder.glob(f"counter_{ended.pid}.db"))
