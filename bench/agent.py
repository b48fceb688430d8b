"""Benchmark the agent: the SOP engine against a hand-written Selenium script, and cold against
warm browsers; account switches with and without a spare browser started ahead; then the whole
stack at scale against hand-driven browsers, and one clinic's check behind another clinic's
batch (fair share). Run apart from the tests:
``python bench/agent.py [--runs N] [--tasks 20] [--browsers 2] [--rounds 2] [--only PART]``.

Both sides do the same clicks of a ``check_eligibility`` for the active test member against the
sandbox portal (sign-in with TOTP, payer unless the session has it, search, wait behind the
spinner, read the table), in one process on one machine, so the ratios are what matter; the
absolute figures move with load.

At scale, ``understudy run`` (API, worker at concurrency ``--browsers``, dispatcher, scheduler,
sandbox) on embedded servers takes ``--tasks`` eligibility checks POSTed at once; the same number
of checks goes to a hand-written script driving as many signed-in browsers through the same
sandbox. Both are warmed first (browsers started and signed in), the two sides alternate, and
the memory of each side's browsers is read half-way through a batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sandbox  # noqa: E402
from bench.services import free_port, services  # noqa: E402
from cli.local import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET, SANDBOX_USERNAME  # noqa: E402
from shared import totp  # noqa: E402
from shared.accounts import Credentials  # noqa: E402
from shared.settings import load_settings  # noqa: E402
from shared.sop.library import builtin_sop  # noqa: E402
from worker.agent.interpreter import run_sop  # noqa: E402
from worker.browser import BrowserPool, egress_of, new_driver  # noqa: E402
from worker.egress import Origin  # noqa: E402

INPUTS = {"member_id": "W100000001", "patient": "Jane Doe", "dob": "1990-01-15"}
CREDENTIALS = Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET)


def serve_sandbox() -> str:
    # The hurdles stay on except the random modal, which would make runs unequal.
    app = sandbox.create_app({"modal": "never", "spinner_s": 0.3, "seed": 1})
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


def _field(driver: WebDriver, label: str):
    element = driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']")
    return driver.find_element(By.ID, element.get_attribute("for"))


def _button(driver: WebDriver, text: str):
    return driver.find_element(By.XPATH, f"//button[normalize-space()='{text}']")


def sign_in(driver: WebDriver, base_url: str) -> None:
    """Sign in with password and TOTP, as a developer would script it, with explicit waits."""
    wait = WebDriverWait(driver, 10)
    driver.get(f"{base_url}/login")
    _field(driver, "Username").send_keys(SANDBOX_USERNAME)
    _field(driver, "Password").send_keys(SANDBOX_PASSWORD)
    _button(driver, "Sign in").click()
    wait.until(
        ec.presence_of_element_located((By.XPATH, "//label[normalize-space()='One-time code']"))
    )
    _field(driver, "One-time code").send_keys(totp.code(SANDBOX_TOTP_SECRET))
    _button(driver, "Verify").click()
    wait.until(ec.presence_of_element_located((By.XPATH, "//h1[normalize-space()='Dashboard']")))


def check(driver: WebDriver, base_url: str, *, on_dashboard: bool = False) -> str:
    """The eligibility check itself, from the dashboard of a signed-in browser."""
    wait = WebDriverWait(driver, 10)
    if not on_dashboard:
        driver.get(f"{base_url}/dashboard")
        wait.until(
            ec.presence_of_element_located((By.XPATH, "//h1[normalize-space()='Dashboard']"))
        )
    # A session kept from the last check may have the payer chosen already, as the agent's
    # prelude also sees: choose it only when the dashboard does not name it.
    if not driver.find_elements(By.XPATH, "//p[normalize-space()='Current payer: Sandbox Health']"):
        Select(_field(driver, "Payer")).select_by_visible_text("Sandbox Health")
        continue_button = _button(driver, "Continue")
        continue_button.click()
        wait.until(ec.staleness_of(continue_button))
    wait.until(ec.element_to_be_clickable((By.LINK_TEXT, "Eligibility & Benefits"))).click()
    wait.until(ec.presence_of_element_located((By.XPATH, "//label[normalize-space()='Member ID']")))
    _field(driver, "Member ID").send_keys(INPUTS["member_id"])
    _field(driver, "Patient First Name").send_keys("Jane")
    _field(driver, "Patient Last Name").send_keys("Doe")
    _field(driver, "Date of Birth").send_keys("01/15/1990")
    _button(driver, "Search").click()
    cell = wait.until(
        ec.visibility_of_element_located((By.XPATH, "//th[normalize-space()='Plan']/../td"))
    )
    return cell.text


def hand_written(driver: WebDriver, base_url: str) -> str:
    """What a developer would write by hand for the sandbox: sign in, then check."""
    sign_in(driver, base_url)
    return check(driver, base_url, on_dashboard=True)


def by_engine(driver: WebDriver, base_url: str) -> str:
    outcome = run_sop(
        driver,
        builtin_sop("check_eligibility"),
        INPUTS,
        base_url=base_url,
        credentials=CREDENTIALS,
    )
    assert outcome.status == "completed", outcome.notes
    return outcome.notes


def timed(runs: int, once: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        once()
        times.append(time.perf_counter() - started)
    return times


# --- At scale: the whole stack against two hand-driven browsers ----------------------------

ELIGIBILITY = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


class Hooks:
    """A webhook receiver on loopback that notes when each task's webhook arrived."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.statuses: dict[int, str] = {}
        self._changed = threading.Condition()

        @Request.application
        def app(request: Request) -> Response:
            data = json.loads(request.get_data())["data"]
            with self._changed:
                self.arrived.setdefault(int(data["id"]), time.monotonic())
                self.statuses[int(data["id"])] = data["status"]
                self._changed.notify_all()
            return Response("ok")

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, ids: list[int], timeout_s: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: set(ids) <= set(self.arrived), timeout_s):
                missing = len(set(ids) - set(self.arrived))
                raise SystemExit(f"{missing} webhooks did not arrive in {timeout_s:.0f} s")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def browser_memory_mb(root_pid: int) -> float:
    """Proportional set size (shared pages split between sharers) of the Chromium and
    chromedriver processes under ``root_pid``, in MB."""
    tree, todo, total_kb = _children(), [root_pid], 0
    while todo:
        pid = todo.pop()
        todo += tree.get(pid, [])
        try:
            if "chrom" not in Path(f"/proc/{pid}/comm").read_text():
                continue
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


class StackRun:
    """``understudy run`` (every Procfile process) on embedded servers in a temporary directory."""

    def __init__(self, tmp: Path, concurrency: int) -> None:
        database_url, redis_url, self.cleanup = services(tmp)
        api_port, sandbox_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{api_port}"
        self.sandbox = f"http://127.0.0.1:{sandbox_port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "UNDERSTUDY_RUN_DIR": str(tmp),
            "PORT": str(api_port),
            "API_WORKERS": "1",
            "SANDBOX_PORT": str(sandbox_port),
            "SANDBOX_URL": self.sandbox,
            "WORKER_CONCURRENCY": str(concurrency),
            "DISPATCHER_CONCURRENCY": "4",
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "LOG_LEVEL": "WARNING",
        }
        self.log = tmp / "stack.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "understudy"), "run"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for url in (f"{self.api}/healthz", f"{self.sandbox}/__sandbox/faults"):
            self._wait_http(url)

    def _wait_http(self, url: str) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the stack exited:\n{self.log.read_text()[-3000:]}")
            try:
                requests.get(url, timeout=3)
                return
            except requests.RequestException:
                time.sleep(0.3)
        raise SystemExit(f"{url} did not come up:\n{self.log.read_text()[-3000:]}")

    def account(self, webhook_url: str) -> dict[str, str]:
        """An account with the sandbox's credentials, made the way a user makes one."""
        made = subprocess.run(
            [str(Path(sys.executable).parent / "understudy"), "accounts", "create", "--name",
             "bench", "--webhook-url", webhook_url, "--sandbox", "--json"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return {"Authorization": f"Bearer {json.loads(made.stdout)['api_key']}"}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for done in self.cleanup:
            done()


@dataclass
class Batch:
    seconds: float
    latencies_s: list[float]
    memory_mb_per_slot: float

    def per_minute(self) -> float:
        return len(self.latencies_s) * 60 / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stack_batch(stack: StackRun, hooks: Hooks, headers: dict, n: int, browsers: int) -> Batch:
    """``n`` tasks POSTed at once; each one's time from its POST to its webhook."""
    posted: dict[int, float] = {}
    started = time.monotonic()
    with requests.Session() as session:
        for _ in range(n):
            at = time.monotonic()
            task = session.post(
                f"{stack.api}/tasks",
                json={"type": "check_eligibility", "data": ELIGIBILITY},
                headers=headers,
                timeout=10,
            ).json()
            posted[task["id"]] = at
    while len(set(posted) & set(hooks.arrived)) < n // 2:  # mid-batch: both browsers busy
        time.sleep(0.2)
    # Per slot: each worker process's spare (BROWSER_SPARE) idles beside its browser at work.
    memory = browser_memory_mb(stack.process.pid) / browsers
    hooks.wait_for(list(posted), timeout_s=60 + 30 * n)
    done = max(hooks.arrived[i] for i in posted)
    bad = [i for i in posted if hooks.statuses[i] != "completed"]
    if bad:
        raise SystemExit(f"tasks {bad} did not complete: the stack log is {stack.log}")
    return Batch(done - started, [hooks.arrived[i] - posted[i] for i in posted], memory)


def script_batch(drivers: list[WebDriver], base_url: str, n: int) -> Batch:
    """``n`` checks handed at once to a thread per signed-in browser."""
    todo = list(range(n))
    lock = threading.Lock()
    finished: list[float] = []
    memory: list[float] = []
    started = time.monotonic()

    def work(driver: WebDriver) -> None:
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            plan = check(driver, base_url)
            assert plan, "no plan read"  # noqa: S101 - a bench sanity check
            with lock:
                finished.append(time.monotonic() - started)
                if len(finished) == n // 2:
                    memory.append(
                        sum(browser_memory_mb(d.service.process.pid) for d in drivers)
                        / len(drivers)
                    )

    threads = [threading.Thread(target=work, args=(d,)) for d in drivers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Batch(time.monotonic() - started, finished, memory[0] if memory else 0.0)


def at_scale(args: argparse.Namespace, settings) -> None:
    """The stack at worker concurrency ``--browsers`` against as many hand-driven browsers."""
    n, browsers = args.tasks, args.browsers
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per webhook
    stack_runs: list[Batch] = []
    script_runs: list[Batch] = []
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        stack = StackRun(Path(tmp), browsers)
        drivers: list[WebDriver] = []
        try:
            # The same pages for both sides: no random modal, the default spinner.
            requests.post(
                f"{stack.sandbox}/__sandbox/faults", json={"modal": "never"}, timeout=5
            ).raise_for_status()
            hooks = Hooks()
            headers = stack.account(hooks.url)
            stack_batch(stack, hooks, headers, browsers * 2, browsers)  # browsers up, signed in
            for _ in range(browsers):
                driver = portal_driver(settings, stack.sandbox)
                drivers.append(driver)
                sign_in(driver, stack.sandbox)
            for _ in range(args.rounds):
                script_runs.append(script_batch(drivers, stack.sandbox, n))
                stack_runs.append(stack_batch(stack, hooks, headers, n, browsers))
        finally:
            for driver in drivers:
                driver.quit()
            stack.stop()

    print()
    print(f"{n} check_eligibility tasks at once, {browsers} browsers each side, {args.rounds}"
          " rounds (alternating)")  # fmt: skip
    print("  (p50 and p95: from the batch's start for the script, from each task's POST to its")
    print("  webhook for the stack; MB: the browsers' memory per browser at work, the stack's")
    print("  spares included)            tasks/min   p50 s   p95 s   MB per slot")
    pairs = list(zip(script_runs, stack_runs, strict=True))
    for i, (script, stack) in enumerate(pairs, 1):
        for name, b in ((f"round {i}: hand-written", script), ("         stack", stack)):
            print(f"  {name:<25} {b.per_minute():9.1f} {b.pct(0.5):7.2f} {b.pct(0.95):7.2f}"
                  f" {b.memory_mb_per_slot:10.0f}")  # fmt: skip
        ratio = stack.per_minute() / script.per_minute()
        print(f"           ratio stack / hand-written {ratio:5.2f}")
    ratios = sorted(st.per_minute() / sc.per_minute() for sc, st in pairs)
    print(f"  throughput, stack / hand-written: worst {ratios[0]:.2f}, best {ratios[-1]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=20, help="tasks per batch at scale")
    parser.add_argument("--browsers", type=int, default=2, help="worker concurrency at scale")
    parser.add_argument("--rounds", type=int, default=2, help="batches per side at scale")
    parser.add_argument(
        "--only", choices=["single", "switch", "scale", "fair"], help="run one part only"
    )
    args = parser.parse_args()
    # A TERM (a timeout, a CI job cancelled) unwinds too, so the servers started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = load_settings()
    if args.only in (None, "single"):
        one_browser(args, settings)
    if args.only in (None, "switch"):
        account_switches(args, settings)
    if args.only in (None, "scale"):
        at_scale(args, settings)
    if args.only in (None, "fair"):
        behind_a_batch(args)


def portal_driver(settings, base_url: str) -> WebDriver:
    """A browser as the worker starts one, let out to the sandbox's origin only, as the worker
    lets it out to a task's portal."""
    driver = new_driver(
        chromium_path=settings.chromium_path, chromedriver_path=settings.chromedriver_path
    )
    proxy = egress_of(driver)
    if proxy is not None:
        proxy.allow([Origin.of(base_url, allow_private=True)])
    return driver


def one_browser(args: argparse.Namespace, settings) -> None:
    """The SOP engine against the script in one browser, and cold against warm."""
    base_url = serve_sandbox()

    def driver() -> WebDriver:
        return portal_driver(settings, base_url)

    browser = driver()
    try:

        def fresh(run: Callable[[WebDriver, str], object]) -> Callable[[], object]:
            # Same browser, signed out each time: both sides do the full sign-in with MFA.
            def once() -> object:
                browser.delete_all_cookies()
                return run(browser, base_url)

            return once

        fresh(hand_written)()  # warm both code paths once
        fresh(by_engine)()
        script = timed(args.runs, fresh(hand_written))
        engine = timed(args.runs, fresh(by_engine))
        browser.delete_all_cookies()
        by_engine(browser, base_url)
        warm = timed(args.runs, lambda: by_engine(browser, base_url))  # signed in already
    finally:
        browser.quit()

    def cold_once() -> None:
        fresh_browser = driver()
        try:
            by_engine(fresh_browser, base_url)
        finally:
            fresh_browser.quit()

    cold = timed(max(3, args.runs // 2), cold_once)

    med = statistics.median
    print(f"check_eligibility against the sandbox, median of {args.runs} runs (seconds)")
    print(f"  {'hand-written Selenium script':<40}{med(script):8.3f}")
    print(f"  {'SOP engine, same clicks':<40}{med(engine):8.3f}")
    print(f"  {'ratio engine / hand-written':<40}{med(engine) / med(script):8.2f}x")
    print()
    print(f"  {'cold: new browser, sign-in, MFA':<40}{med(cold):8.3f}")
    print(f"  {'warm: reused browser and session':<40}{med(warm):8.3f}")
    print(f"  {'ratio warm / cold':<40}{med(warm) / med(cold):8.2f}   (cold / warm"
          f" {med(cold) / med(warm):.2f}x)")  # fmt: skip


def account_switches(args: argparse.Namespace, settings) -> None:
    """Tasks of two accounts in turn through one worker's browser pool, so that every task
    needs a fresh browser: without a spare (BROWSER_SPARE=false) each waits for the last
    account's browser to quit and its own to start; with one it takes the browser the pool
    started ahead. Back to back, the next spare starts beside the running task; with a pause
    between tasks, as a clinic's tasks come, it starts in the pause."""
    base_url = serve_sandbox()

    def batch(spare: bool, pause_s: float, runs: int) -> tuple[list[float], float]:
        pool = BrowserPool(lambda: portal_driver(settings, base_url), spare=spare)
        times, spare_mb = [], 0.0
        try:
            with pool.session("warm-up") as driver:  # the pool's first browser, and its spare
                by_engine(driver, base_url)
            for i in range(runs):
                time.sleep(pause_s)
                if spare and i == 0:  # the idle spare's memory: what BROWSER_SPARE costs
                    waiting = pool._spare.result()  # type: ignore[union-attr]
                    spare_mb = browser_memory_mb(waiting.service.process.pid)
                started = time.perf_counter()
                with pool.session(f"account-{i % 2}") as driver:
                    by_engine(driver, base_url)
                times.append(time.perf_counter() - started)
        finally:
            pool.close()
        return times, spare_mb

    print()
    print("account switches: tasks of two accounts in turn, one worker process (seconds)")
    print(f"  {'':<34}{'no spare':>10}{'spare':>10}{'ratio':>8}")
    for pause_s in (0.0, 2.0):
        times: dict[bool, list[float]] = {False: [], True: []}
        spare_mb = 0.0
        for _ in range(2):  # the sides alternate
            for spare in (False, True):
                got, mb = batch(spare, pause_s, max(2, args.runs // 2))
                times[spare] += got
                spare_mb = max(spare_mb, mb)
        off, on = statistics.median(times[False]), statistics.median(times[True])
        what = "back to back" if not pause_s else f"{pause_s:g} s apart"
        print(f"  {'median task, ' + what:<34}{off:10.3f}{on:10.3f}{on / off:8.2f}")
    print(f"  {'an idle spare browser (PSS, MB)':<34}{spare_mb:20.0f}")


def behind_a_batch(args: argparse.Namespace) -> None:
    """One clinic's check sent just after another clinic's batch of ``--tasks``, on the whole
    stack at worker concurrency ``--browsers``: its time from POST to webhook, against the same
    check sent alone; and the batch's own time, against the batch alone."""
    n, browsers = args.tasks, args.browsers
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    def post(headers: dict) -> int:
        return requests.post(
            f"{stack.api}/tasks",
            json={"type": "check_eligibility", "data": ELIGIBILITY},
            headers=headers,
            timeout=10,
        ).json()["id"]

    def run(batch: int, single: bool) -> tuple[float, float]:
        """(the batch's time to its last webhook, the single check's POST to webhook)."""
        started = time.monotonic()
        ids = [post(batch_clinic) for _ in range(batch)]
        single_id, single_at = (post(other_clinic), time.monotonic()) if single else (0, 0.0)
        hooks.wait_for([*ids, *([single_id] if single else [])], timeout_s=60 + 30 * batch)
        batch_s = max((hooks.arrived[i] for i in ids), default=started) - started
        return batch_s, (hooks.arrived[single_id] - single_at) if single else 0.0

    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        stack = StackRun(Path(tmp), browsers)
        try:
            requests.post(
                f"{stack.sandbox}/__sandbox/faults", json={"modal": "never"}, timeout=5
            ).raise_for_status()
            hooks = Hooks()
            batch_clinic, other_clinic = stack.account(hooks.url), stack.account(hooks.url)
            run(browsers * 2, single=True)  # browsers and spares up, both clinics seen once
            # Alone, as behind the batch, the check finds the workers' browsers the batch's.
            run(browsers * 2, single=False)
            _, alone = run(0, single=True)
            batch_alone, _ = run(n, single=False)
            batch_s, behind = run(n, single=True)
        finally:
            stack.stop()
    print()
    print(f"one clinic's check sent just after another clinic's batch of {n}, worker concurrency"
          f" {browsers} (seconds)")  # fmt: skip
    print(f"  {'the check, POST to webhook, alone':<48}{alone:8.2f}")
    print(f"  {'the same, behind the batch':<48}{behind:8.2f}   ({behind / alone:.2f}x)")
    print(f"  {'the batch, to its last webhook, alone':<48}{batch_alone:8.2f}")
    print(f"  {'the same, with the check':<48}{batch_s:8.2f}   ({batch_s / batch_alone:.2f}x)")


if __name__ == "__main__":
    main()
