"""The development encryption key under the run dir: the processes of a first `make run` start
at once, and must all end up with the one key, without an error."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from shared import crypto

ROOT = Path(__file__).resolve().parents[2]


def test_a_key_that_lands_after_the_check_is_read_not_an_error(tmp_path, monkeypatch):
    # given a key another process wrote just after this one found none (the check is made to
    # miss it, which is what the race does)
    (tmp_path / "encryption.key").write_text("their-key\n")
    monkeypatch.setattr(Path, "exists", lambda _self: False)
    # when this process gets the key, then it is theirs, and nothing of its own is left behind
    assert crypto._dev_key(tmp_path) == "their-key"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encryption.key"]


def test_processes_starting_at_once_on_a_new_run_dir_share_one_key(tmp_path):
    # given eight processes that ask for the key at the same instant
    start = time.time() + 1.5
    script = (
        "import sys, time; from pathlib import Path; from shared.crypto import _dev_key;"
        f"time.sleep(max(0, {start} - time.time())); print(_dev_key(Path(sys.argv[1])))"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]  # fmt: skip
    results = [p.communicate(timeout=60) for p in processes]
    # then every one exits 0 with the same key, the one in the file
    assert [p.returncode for p in processes] == [0] * 8, [err for _out, err in results]
    keys = {out.strip() for out, _err in results}
    assert keys == {(tmp_path / "encryption.key").read_text().strip()}
    assert len(keys.pop()) == 44  # a Fernet key
