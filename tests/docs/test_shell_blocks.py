"""Every shell block of README.md and docs/*.md runs, as written, against a real stack.

Which blocks: every fenced block tagged ``sh``, ``bash``, ``shell``, ``console`` or ``zsh``, in
README.md and every ``.md`` under docs/, in document order. A block with no language tag counts
as shell when its first line starts with ``$ `` or with a command a reader types (``curl``,
``.venv/bin/``, ``understudy``, ``make``, ``export``, ``jq``); other untagged blocks (an HTTP
message, a formula) are text. In a ``console`` block the ``$ `` lines (and their ``\\``
continuations) are the commands and every other line is output.

How they run: one bash session per document, ``set -euo pipefail``, each block in order in the
same shell, so a variable one block sets (``KEY=...``) is there for the next, as for a reader who
types them into one terminal. The working directory holds what a reader of a clone has at hand:
``.venv`` (this test's environment), ``letter.pdf`` (a file of their own), and every block marked
``<!-- file: NAME -->``, written as NAME (the README's ``receiver.py``). The README runs from
scratch; a page of docs/ starts where the README leaves its reader, as its reader comes to it: in
a copy of the README reader's folder (``account.json``), with the variables the README's blocks
set (``KEY``).
The stack is started the way ``make run`` starts it (``understudy run`` on its embedded
PostgreSQL and Redis, under a run dir of its own). Nothing else is substituted, except:

- the ports: the docs' ``8000`` (API), ``8100`` (sandbox) and ``9000`` (the reader's receiver)
  are rewritten to the stack's free ports (``rewrite_ports``), and the session gets
  ``UNDERSTUDY_URL``, ``UNDERSTUDY_RUN_DIR`` and ``EMBEDDED_REDIS_PORT`` so the CLI finds this
  stack as a second terminal of the same checkout finds ``make run``'s;
- Python writes unbuffered (``PYTHONUNBUFFERED``), as to a reader's terminal;
- pip runs with ``PIP_NO_INDEX`` (a test downloads nothing: the packages the docs install are
  dev dependencies already in ``.venv``);
- ``curl`` runs with ``--fail-with-body``, so a documented request that answers 4xx or 5xx fails
  its block (``curl -s`` alone exits 0), unless the block shows an ``{"error": ...}`` as its
  output.

What is checked: every block exits 0. Where a block shows its output as a ``# {...}`` comment
after a command (or as an output line of a ``console`` block), the JSON that command printed has
the same keys (a ``"…": "…"`` entry means "and more keys"), the same strings and booleans, and
numbers where the doc shows numbers (ids and counts depend on what ran before). A string with
``...`` or ``…`` in it is a placeholder: only its type is checked.

Markers, on the line(s) right above a block (blank lines between are allowed):

- ``<!-- not run: <reason> -->``: a block that cannot run here (it needs a Kubernetes cluster or
  a Docker engine, or it is ``make run`` / ``make test`` itself). Each is listed as a skipped
  test with its reason. An unmarked block that fails fails the test.
- ``<!-- background: <port> -->``: a server a reader leaves running in a terminal of its own
  (the webhook receiver). It runs in the background until the document ends; the next block
  starts once the port answers.
- ``<!-- background prints: TEXT -->``: what a background server shows after this block (the
  receiver's line for a ``ping``); the test waits up to 30 s for it.
- ``<!-- file: NAME -->``: the block is a file the reader saves (see above).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Stack, running_stack

ROOT = Path(__file__).resolve().parents[2]
SHELL_TAGS = {"sh", "bash", "shell", "console", "zsh"}
COMMAND_STARTS = ("$ ", "curl ", ".venv/bin/", "understudy ", "make ", "export ", "jq ")
DOCUMENT_TIMEOUT_S = 240
PLACEHOLDERS = ("...", "…")


README = ROOT / "README.md"


def documents() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    tag: str
    text: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def is_shell(self) -> bool:
        if self.tag:
            return self.tag in SHELL_TAGS
        first = next((line for line in self.text.splitlines() if line.strip()), "")
        return first.lstrip().startswith(COMMAND_STARTS)


FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<tag>[\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*(not run|background prints|background|file)\s*:\s*(.*?)\s*-->\s*$")


def parse_blocks(doc: Path) -> list[Block]:
    """Every fenced block of a markdown file, with the markers on the lines right above it."""
    lines = doc.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        markers: dict[str, str] = {}
        j = i - 1
        while j >= 0 and (not lines[j].strip() or MARKER.match(lines[j])):
            if found := MARKER.match(lines[j]):  # blank lines between markers and block are fine
                markers[found[1]] = found[2]
            j -= 1
        body: list[str] = []
        k = i + 1
        while k < len(lines) and not lines[k].strip().startswith(fence):
            body.append(lines[k].removeprefix(indent))
            k += 1
        blocks.append(Block(doc, i + 1, opening["tag"].lower(), "\n".join(body) + "\n", markers))
        i = k + 1
    return blocks


def shell_blocks(doc: Path) -> list[Block]:
    return [b for b in parse_blocks(doc) if b.is_shell]


def file_blocks(doc: Path) -> list[Block]:
    return [b for b in parse_blocks(doc) if "file" in b.markers]


def console_to_script(text: str) -> str:
    """A console transcript as a script: ``$ `` lines are commands, the rest output comments."""
    script, continued = [], False
    for line in text.splitlines():
        if line.startswith("$ ") or continued:
            command = line.removeprefix("$ ") if not continued else line
            script.append(command)
            continued = command.rstrip().endswith("\\")
        else:
            script.append(f"# {line}" if line.strip() else "")
    return "\n".join(script) + "\n"


@dataclass
class Chunk:
    """A run of a block's lines up to the output it shows (if any)."""

    block: Block
    script: str
    expected: object = None
    has_expected: bool = False


def _json_comment(comment_lines: list[str]) -> tuple[bool, object]:
    text = " ".join(line.lstrip().removeprefix("#").strip() for line in comment_lines)
    if not text.startswith(("{", "[")):
        return False, None
    try:
        return True, json.loads(text)
    except json.JSONDecodeError:
        return False, None


def chunks(block: Block) -> list[Chunk]:
    """The block cut after every ``# {json}`` comment that shows what the commands before print."""
    text = console_to_script(block.text) if block.tag == "console" else block.text
    found: list[Chunk] = []
    current: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("#") and any(s.strip() for s in current):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("#"):
                j += 1
            ok, expected = _json_comment(lines[i:j])
            if ok:
                found.append(Chunk(block, "\n".join(current) + "\n", expected, True))
                current = []
                i = j
                continue
        current.append(lines[i])
        i += 1
    if any(line.strip() and not line.lstrip().startswith("#") for line in current):
        found.append(Chunk(block, "\n".join(current) + "\n"))
    return found


def differences(expected: object, actual: object, path: str = "$") -> list[str]:
    """What of ``expected`` (as a doc shows it) the actual output does not match."""
    if isinstance(expected, str):
        if not isinstance(actual, str):
            return [f"{path}: expected a string, got {actual!r}"]
        if any(p in expected for p in PLACEHOLDERS) or expected == actual:
            return []
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    if isinstance(expected, bool) or expected is None:
        return [] if expected is actual else [f"{path}: expected {expected!r}, got {actual!r}"]
    if isinstance(expected, int | float):
        ok = isinstance(actual, int | float) and not isinstance(actual, bool)
        return [] if ok else [f"{path}: expected a number, got {actual!r}"]
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: expected a list, got {actual!r}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=False))
            for d in differences(e, a, f"{path}[{i}]")
        ]
    assert isinstance(expected, dict), expected
    if not isinstance(actual, dict):
        return [f"{path}: expected an object, got {actual!r}"]
    shown = {k: v for k, v in expected.items() if k not in PLACEHOLDERS}
    problems = [f"{path}: no key {k!r}" for k in shown if k not in actual]
    if len(shown) == len(expected):  # no "…" entry: the keys are all of them
        problems += [f"{path}: unexpected key {k!r}" for k in actual if k not in expected]
    for key, value in shown.items():
        if key in actual:
            problems += differences(value, actual[key], f"{path}.{key}")
    return problems


def printed_json(stdout: str) -> object:
    """The last JSON value a chunk printed: from the last line that starts one to the end."""
    lines = stdout.rstrip().splitlines()
    for i in reversed(range(len(lines))):
        if lines[i].startswith(("{", "[")):
            try:
                return json.loads("\n".join(lines[i:]))
            except json.JSONDecodeError:
                continue
    raise AssertionError(f"expected JSON output, got:\n{stdout}")


# ---- the stack and the session -------------------------------------------------------------


@dataclass
class DocsStack:
    stack: Stack
    env: dict[str, str]  # what a second terminal of the checkout has
    ports: dict[str, int]  # the docs' port -> this run's


@pytest.fixture(scope="module")
def docs_stack(tmp_path_factory: pytest.TempPathFactory):
    """The stack as `make run` starts it: embedded PostgreSQL and Redis under a run dir."""
    root = tmp_path_factory.mktemp("docs-stack")
    api_port, sandbox_port, redis_port = free_port(), free_port(), free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root / "home"),
        "LANG": "C.UTF-8",
        "UNDERSTUDY_RUN_DIR": str(root / ".run"),
        "EMBEDDED_REDIS_PORT": str(redis_port),
        "WORKSPACE_DIR": str(root / "work"),
        "PORT": str(api_port),
        "API_WORKERS": "1",  # two cores are shared by every test: one gunicorn worker is plenty
        "SANDBOX_PORT": str(sandbox_port),
        "SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}",
    }
    (root / "home").mkdir()
    ports = {"8000": api_port, "8100": sandbox_port, "9000": free_port()}
    with running_stack(env, root / "stack.log", api_port, env["SANDBOX_URL"]) as stack:
        session_env = {
            **env,
            "UNDERSTUDY_URL": stack.api_url,
            "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            # a reader's terminal shows a server's print() at once; a file would buffer it
            "PYTHONUNBUFFERED": "1",
        }
        yield DocsStack(stack, session_env, ports)


def rewrite_ports(text: str, ports: dict[str, int]) -> str:
    for documented, actual in ports.items():
        text = re.sub(rf"\b(127\.0\.0\.1|localhost):{documented}\b", f"127.0.0.1:{actual}", text)
        text = re.sub(rf"(--port[ =]){documented}\b", rf"\g<1>{actual}", text)
    return text


PRELUDE = r"""set -euo pipefail
# A documented request must succeed: curl -s exits 0 on a 4xx, so fail it like a reader would
# notice it, unless the block shows the error it expects.
curl() {
  if [[ ${DOC_EXPECTS_ERROR:-0} == 1 ]]; then command curl "$@"
  else command curl --fail-with-body "$@"; fi
}
wait_for_output() {
  for _ in $(seq 150); do grep -qF -- "$1" .doc/*.bg 2>/dev/null && return 0; sleep 0.2; done
  echo "no background block printed: $1" >&2; return 1
}
wait_for_port() {
  for _ in $(seq 300); do (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.2; done
  echo "nothing answers on port $1" >&2; return 1
}
"""


@dataclass
class Step:
    chunk: Chunk
    background_port: int | None = None
    background_prints: str | None = None  # after the step


def session_script(steps: list[Step], scratch: Path, start_from: Path | None) -> str:
    lines = [PRELUDE]
    if start_from is not None:
        lines.append(f"source {shlex.quote(str(start_from / '.doc' / 'state.sh'))}")
    lines.append("compgen -v | sort > .doc/vars.before")
    for n, step in enumerate(steps):
        (scratch / f"{n}.sh").write_text(step.chunk.script)
        expects_error = isinstance(step.chunk.expected, dict) and "error" in step.chunk.expected
        lines.append(f"echo {n} > .doc/current")
        lines.append(f"DOC_EXPECTS_ERROR={int(expects_error)}")
        if step.background_port:
            lines.append(f"( source .doc/{n}.sh ) > .doc/{n}.bg 2>&1 &")
            lines.append(f"wait_for_port {step.background_port}")
        else:
            lines.append(f"source .doc/{n}.sh > .doc/{n}.out 2> .doc/{n}.err")
        if step.background_prints:
            lines.append(f"wait_for_output {shlex.quote(step.background_prints)} 2>> .doc/{n}.err")
    # what the session set, for a document that starts where this one leaves the reader
    lines.append("compgen -v | sort > .doc/vars.after")
    lines.append(
        # (grep finds nothing in a page that sets no variable: not a failure)
        "comm -13 .doc/vars.before .doc/vars.after | { grep -v '^DOC_' || true; } |"
        ' while read -r name; do declare -p "$name"; done > .doc/state.sh'
    )
    lines.append("echo done > .doc/current")
    return "\n".join(lines) + "\n"


def _output(scratch: Path, n: int, suffix: str) -> str:
    path = scratch / f"{n}.{suffix}"
    return path.read_text(errors="replace") if path.exists() else ""


def run_document(
    doc: Path, docs_stack: DocsStack, workdir: Path, start_from: Path | None = None
) -> list[str]:
    """Run the document's shell blocks in one bash session; the problems found.

    With ``start_from`` (the README reader's folder) the session starts with that reader's
    files and shell variables."""
    if start_from is not None:
        shutil.copytree(start_from, workdir, symlinks=True, ignore=shutil.ignore_patterns(".doc"))
    else:
        workdir.mkdir()
        (workdir / ".venv").symlink_to(Path(sys.prefix))
        (workdir / "docs").symlink_to(ROOT / "docs")  # a reader is in the clone: docs/examples
    (workdir / "letter.pdf").write_bytes(b"%PDF-1.4\n% an appeal letter\n%%EOF\n")
    for block in file_blocks(doc):
        (workdir / block.markers["file"]).write_text(rewrite_ports(block.text, docs_stack.ports))
    scratch = workdir / ".doc"
    scratch.mkdir()
    steps: list[Step] = []
    for block in shell_blocks(doc):
        if "not run" in block.markers:
            continue
        background = block.markers.get("background")
        for chunk in chunks(block):
            chunk.script = rewrite_ports(chunk.script, docs_stack.ports)
            port = docs_stack.ports.get(background, int(background)) if background else None
            steps.append(Step(chunk, port))
        steps[-1].background_prints = block.markers.get("background prints")
    script = session_script(steps, scratch, start_from)
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=workdir,
        env=docs_stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so the background blocks end with the session
    )
    try:
        session_output, _ = process.communicate(timeout=DOCUMENT_TIMEOUT_S)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        session_output = ""
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait()
    reached = (scratch / "current").read_text().strip() if (scratch / "current").exists() else "0"
    if reached != "done":
        n = int(reached)
        chunk = steps[n].chunk
        why = f"did not finish within {DOCUMENT_TIMEOUT_S} s" if timed_out else "failed"
        return [
            f"{chunk.block.where}: the block {why} (a server a reader leaves running needs "
            "<!-- background: PORT -->; one that cannot run here <!-- not run: reason -->)\n"
            f"--- the commands\n{chunk.script}--- stdout\n{_output(scratch, n, 'out')}"
            f"--- stderr\n{_output(scratch, n, 'err')}{session_output}"
            + "".join(
                f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                for p in scratch.glob("*.bg")
            )
        ]
    problems = []
    for n, step in enumerate(steps):
        if not step.chunk.has_expected:
            continue
        stdout = _output(scratch, n, "out")
        try:
            actual = printed_json(stdout)
        except AssertionError as err:
            problems.append(f"{step.chunk.block.where}: {err}")
            continue
        for difference in differences(step.chunk.expected, actual):
            problems.append(
                f"{step.chunk.block.where}: the output is not what the doc shows: {difference}\n"
                f"--- the commands\n{step.chunk.script}--- printed\n{stdout}"
            )
    return problems


# ---- the tests -----------------------------------------------------------------------------


def _runnable(doc: Path) -> bool:
    return any("not run" not in b.markers for b in shell_blocks(doc))


RUNNABLE = [d for d in documents() if _runnable(d)]
NOT_RUN = [b for d in documents() for b in shell_blocks(d) if "not run" in b.markers]


@dataclass
class Reader:
    folder: Path
    problems: list[str]


@pytest.fixture(scope="module")
def readme_reader(docs_stack, tmp_path_factory) -> Reader:
    """A reader who has run the README's blocks: their folder and what went wrong."""
    folder = tmp_path_factory.mktemp("readme") / "reader"
    return Reader(folder, run_document(README, docs_stack, folder))


@pytest.mark.e2e
@pytest.mark.parametrize("doc", RUNNABLE, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_shell_block_of_the_document_runs_as_written(
    doc, docs_stack, readme_reader, tmp_path
):
    """The README from scratch; a page of docs/ where the README leaves its reader (``KEY``,
    ``account.json``), as its reader comes to it."""
    if doc == README:
        problems = readme_reader.problems
    else:
        reader = tmp_path / "reader"
        problems = run_document(doc, docs_stack, reader, start_from=readme_reader.folder)
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("block", NOT_RUN, ids=lambda b: b.where)
def test_blocks_marked_not_run(block):
    """Listed, with the reason, in the skip summary; a marker needs a reason."""
    assert block.markers["not run"], f"{block.where}: <!-- not run: ... --> needs a reason"
    pytest.skip(f"{block.where}: {block.markers['not run']}")


def test_the_readme_is_covered():
    """The blocks issue 11 names are run, not marked away."""
    run = "".join(b.text for b in shell_blocks(ROOT / "README.md") if "not run" not in b.markers)
    for command in (
        "understudy accounts create",
        '"type": "check_eligibility"',
        '"type": "submit_claim"',
        "type=submit_appeal",
        "/webhooks/recover",
        "flask --app receiver run",
    ):
        assert command in run, f"no README block that runs runs {command!r}"
    assert {b.markers["file"] for b in file_blocks(ROOT / "README.md")} >= {"receiver.py"}


def test_the_block_rules():
    """The rules the docstring gives, on a small document."""
    doc = ROOT / "README.md"
    console = Block(doc, 1, "console", '$ curl -s x \\\n  -d y\n{"a": 1}\n\n$ echo hi\nhi\n')
    [first, second] = chunks(console)
    assert first.script == "curl -s x \\\n  -d y\n" and first.expected == {"a": 1}
    assert second.script.strip() == "echo hi\n# hi".strip()
    assert Block(doc, 1, "", "curl -s http://x\n").is_shell
    assert not Block(doc, 1, "", "POST /hook HTTP/1.1\n").is_shell
    assert differences({"id": 1, "key": "us_...", "…": "…"}, {"id": 7, "key": "us_9", "x": 0}) == []
    assert differences({"count": 3}, {"count": 0, "more": 1}) == ["$: unexpected key 'more'"]
    assert differences({"status": "completed"}, {"status": "failed"})
    assert rewrite_ports("http://127.0.0.1:8000/x --port 9000", {"8000": 1, "9000": 2}) == (
        "http://127.0.0.1:1/x --port 2"
    )
