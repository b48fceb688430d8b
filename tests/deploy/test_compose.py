"""docker-compose.yml: migrations before every process, one image, browsers on the Grid.

No container runtime runs here, so the file is read, not started.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ("web", "worker", "dispatcher", "scheduler")


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


def _procfile() -> dict[str, str]:
    return dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines())


def _command(service: dict[str, Any]) -> list[str]:
    """The argv a service runs; a `sh -c` wrapper is unwrapped at its `exec`."""
    command = list(service["command"])
    if command[:2] == ["sh", "-c"]:
        words = shlex.split(command[2])
        command = words[words.index("exec") + 1 :]
    return command


def test_migrations_run_first_and_every_process_waits_for_them() -> None:
    services = _services()
    release = services["release"]
    assert _command(release) == shlex.split(_procfile()["release"])
    assert release["restart"] == "no"
    assert release["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in (*PROCESSES, "sandbox"):
        condition = services[name]["depends_on"]["release"]["condition"]
        assert condition == "service_completed_successfully", name


def test_one_image_runs_every_procfile_process() -> None:
    services = _services()
    procfile = _procfile()
    images = {services[name]["image"] for name in (*PROCESSES, "release", "sandbox")}
    assert len(images) == 1
    for name in (*PROCESSES, "sandbox"):
        expected = shlex.split(procfile[name].split(" --concurrency")[0])
        assert _command(services[name])[: len(expected)] == expected, name


def test_worker_and_dispatcher_concurrency_are_their_settings() -> None:
    services = _services()
    settings = (
        ("worker", "WORKER_CONCURRENCY", "2"),
        ("dispatcher", "DISPATCHER_CONCURRENCY", "16"),
    )
    for name, setting, default in settings:
        command = _command(services[name])
        # "$$" is compose's escape: the container's shell reads $NAME from its environment
        assert command[command.index("--concurrency") + 1] == f"$${setting}", name
        assert services[name]["environment"][setting] == default, name


def test_only_web_keeps_the_images_http_healthcheck() -> None:
    services = _services()
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ("worker", "dispatcher", "scheduler", "release"):
        assert services[name]["healthcheck"] == {"disable": True}, name


def test_workers_drive_the_grid_through_their_own_egress_proxy() -> None:
    services = _services()
    worker = services["worker"]
    grid_url = worker["environment"]["SELENIUM_REMOTE_URL"]
    assert grid_url.startswith("http://selenium:4444")
    image = services["selenium"]["image"]
    assert image.startswith("selenium/standalone-chromium:") and not image.endswith(":latest")
    # The Grid node reaches the proxy over the compose network, so it listens on every interface.
    assert worker["environment"]["EGRESS_PROXY_BIND_HOST"] == "0.0.0.0"  # noqa: S104
    assert "EGRESS_PROXY_HOST=" in worker["command"][2]  # each replica names its own address
    assert worker["depends_on"]["selenium"]["condition"] == "service_started"


def test_the_stack_uses_the_compose_postgres_and_redis() -> None:
    env = _services()["web"]["environment"]
    assert (
        env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
    )
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["ENCRYPTION_KEYS"].startswith("${ENCRYPTION_KEYS:?")


def test_worker_command_names_its_own_address_and_runs_the_procfile_worker(tmp_path: Path) -> None:
    """The worker's `sh -c` line, as compose runs it (`$$` is compose's escape for `$`): the
    celery it starts gets EGRESS_PROXY_HOST set to this host's address and the Procfile's argv."""
    script = _services()["worker"]["command"][2].replace("$$", "$")
    # A stand-in `celery` on PATH that reports what it was started with.
    fake = tmp_path / "celery"
    fake.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "print(json.dumps([os.environ['EGRESS_PROXY_HOST'], sys.argv[1:]]))\n"
    )
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "WORKER_CONCURRENCY": "2", "LOG_LEVEL": "INFO"}
    out = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    proxy_host, argv = json.loads(out.stdout)
    ipaddress.ip_address(proxy_host)  # an address, one of them
    expected = shlex.split(_procfile()["worker"])[1:]
    expected = [
        word.replace("${WORKER_CONCURRENCY:-2}", "2").replace("${LOG_LEVEL:-INFO}", "INFO")
        for word in expected
    ]
    assert argv == expected
