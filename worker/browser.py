"""Starting headless Chromium, and keeping one browser per worker process between tasks.

Binary and driver paths are always explicit so Selenium Manager never downloads anything.
A browser (and its profile, cookies included) is only ever reused for the same account and the
same version of its portal credentials.

Every browser is fenced in:
- its network goes through its own egress proxy (:mod:`worker.egress`), loopback included;
- its profile and temporary files live in a 0700 folder under the workspace root, deleted when
  it quits (:mod:`worker.workspace`);
- chromedriver and Chromium run in a process group of their own, watched by a tiny watchdog
  process that holds one end of a pipe to the worker process: when the worker process dies, by
  any signal, the kernel closes the pipe and the watchdog kills the whole group;
- every WebDriver command has a time limit: a browser that does not answer in time (a page's
  script that never yields holds chromedriver too) is killed at once, and the command raises
  :class:`~worker.errors.BrowserHung`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chromium.remote_connection import ChromiumRemoteConnection
from selenium.webdriver.remote.client_config import ClientConfig
from selenium.webdriver.remote.command import Command
from selenium.webdriver.remote.file_detector import LocalFileDetector
from selenium.webdriver.remote.webdriver import WebDriver

from shared import metrics
from worker import workspace
from worker.egress import EgressProxy
from worker.errors import AgentError, BrowserHung, LeftPortal, TaskCanceled

log = logging.getLogger(__name__)

HEADLESS_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
    "--disable-breakpad",
    "--disable-client-side-phishing-detection",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-pings",
    # WebRTC could send UDP around the proxy; only proxied traffic is allowed.
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
)

# How much longer than the page load timeout a WebDriver command may take before the browser
# counts as hung, unless the worker says otherwise (BROWSER_COMMAND_SLACK_S). A command's own
# waits (a page load, a click's navigation, a script) are bounded by the session's timeouts,
# which chromedriver enforces only while its page answers.
COMMAND_SLACK_S = 30.0
# How long a browser kept for the next task may take to answer the pool's liveness check. A
# browser that answers at all answers "return 1" in milliseconds; one whose page started a
# script that never ends after its task was over would otherwise cost the next task a whole
# command limit (page load timeout + COMMAND_SLACK_S) before it is replaced.
ALIVE_CHECK_S = 5.0
# chromedriver's answer to a command (other than a page load) when the page's renderer is busy
# for good: it would answer every later command so, after as long a wait.
_RENDERER_STUCK = "Timed out receiving message from renderer"
# The commands that may wait for a page to load (typing Enter sends a form): chromedriver says
# the same of a slow page, which the browser stops loading, and answers as before.
_MAY_LOAD = (Command.GET, Command.CLICK_ELEMENT, Command.SEND_KEYS_TO_ELEMENT, Command.QUIT)
# How many of a page's dialogs one command answers before it gives up (a page that shows one
# after another forever): the command then fails with the dialog's text.
_DIALOGS_PER_COMMAND = 10
# How a dialog is answered, by the SOP's word for it (shared.sop.model.DIALOG_ANSWERS): the
# command that does it, and the button a person would have pressed. An alert has only OK,
# which either command presses.
_ANSWERS = {
    "accept": (Command.W3C_ACCEPT_ALERT, "OK"),
    "dismiss": (Command.W3C_DISMISS_ALERT, "Cancel"),
}

# Room for Chromium's ".org.chromium.Chromium.XXXXXX/SingletonSocket" within a socket path.
_MAX_SCRATCH_PATH = 60

# Used when no workspace root is given (tests, scripts); workers use WORKSPACE_DIR.
DEFAULT_ROOT = Path(tempfile.gettempdir()) / f"understudy-{os.getuid()}"

# Runs in its own process: blocks on the pipe until the worker process is gone (or quits the
# browser), then kills chromedriver's process group and whatever still names the profile.
_WATCHDOG = """
import os, signal, sys
from pathlib import Path
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
fd, group, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
while os.read(fd, 1):
    pass
try:
    os.killpg(group, signal.SIGKILL)
except OSError:
    pass
for entry in Path("/proc").iterdir():
    if entry.name.isdigit() and int(entry.name) != os.getpid():
        try:
            if folder in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            pass
"""


@dataclass
class _Fence:
    """What a browser owns besides its WebDriver session."""

    proxy: EgressProxy
    folder: Path
    watchdog: subprocess.Popen | None = None
    watchdog_pipe: int | None = None

    def kill(self) -> None:
        """Kill the browser's processes now (the watchdog does it on EOF), keeping the proxy
        and the folder for :func:`_release`."""
        if self.watchdog_pipe is not None:
            os.close(self.watchdog_pipe)
            self.watchdog_pipe = None


def chrome_options(*, chromium_path: str | None, headless: bool = True) -> Options:
    """ChromeOptions shared by local and remote (Grid) browsers."""
    options = Options()
    if chromium_path:
        options.binary_location = chromium_path
    # A dialog (alert, confirm, prompt, "leave this page?") is left open for the command it
    # gets in the way of to fail, and :class:`_WatchedConnection` answers it the way the step
    # running says (OK unless it says Cancel), sends the command again and notes its text for
    # the trajectory.
    options.unhandled_prompt_behavior = "ignore"
    for flag in HEADLESS_FLAGS:
        if flag.startswith("--headless") and not headless:
            continue
        options.add_argument(flag)
    # A password manager bubble or translate bar would cover the portal's own UI.
    options.add_experimental_option(
        "prefs",
        {
            "credentials_enable_service": False,
            "profile.password_manager_enabled": False,
            # No preconnects or prefetches the page did not ask for.
            "net.network_prediction_options": 2,
            "download.prompt_for_download": False,
        },
    )
    options.add_argument(
        "--disable-features=Translate,PasswordLeakDetection,NetworkTimeServiceQuerying,"
        "OptimizationHints,MediaRouter,AutofillServerCommunication"
    )
    return options


def _fence_options(options: Options, proxy: EgressProxy) -> None:
    # "<-loopback>" removes Chromium's built-in bypass, so even loopback goes through the proxy.
    options.add_argument(f"--proxy-server=http://{proxy.address}")
    options.add_argument("--proxy-bypass-list=<-loopback>")


def cdp(driver: WebDriver, command: str, params: dict) -> dict:
    """A DevTools command, locally or through a W3C server that forwards chromedriver's
    vendor endpoint (a Grid node does)."""
    if hasattr(driver, "execute_cdp_cmd"):
        return driver.execute_cdp_cmd(command, params)
    driver.command_executor.add_command(  # type: ignore[union-attr]
        "executeCdpCommand", "POST", "/session/$sessionId/goog/cdp/execute"
    )
    return driver.execute("executeCdpCommand", {"cmd": command, "params": params})["value"]


def _block_local_files(driver: WebDriver) -> None:
    """Pause (never serve) any file: request, should one get past the engine's goto guard."""
    try:
        cdp(driver, "Fetch.enable", {"patterns": [{"urlPattern": "file:*"}]})
    except WebDriverException as exc:
        # A Grid that forwards no DevTools commands: the engine's guards still refuse file:.
        log.warning("could not block file: URLs in the browser: %s", exc.msg or exc)


def egress_of(driver: WebDriver) -> EgressProxy | None:
    """The egress proxy a browser from :func:`new_driver` is fenced in by."""
    fence: _Fence | None = getattr(driver, "_understudy_fence", None)
    return fence.proxy if fence else None


def set_downloads(driver: WebDriver, folder: Path | None) -> None:
    """Send this browser's downloads to ``folder`` (a task's workspace), or refuse them."""
    params = {"behavior": "allow", "downloadPath": str(folder)} if folder else {"behavior": "deny"}
    try:
        cdp(driver, "Browser.setDownloadBehavior", params)
    except Exception as exc:  # a Grid that forwards no DevTools commands: downloads stay remote
        log.debug("could not set the download folder: %s", exc)


def _start_watchdog(fence: _Fence, group: int) -> None:
    read_end, write_end = os.pipe()
    try:
        fence.watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(read_end), str(group), str(fence.folder)],
            pass_fds=(read_end,),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
    finally:
        os.close(read_end)
    fence.watchdog_pipe = write_end


def new_driver(
    *,
    chromium_path: str,
    chromedriver_path: str,
    remote_url: str | None = None,
    headless: bool = True,
    page_load_timeout_s: float = 30.0,
    command_slack_s: float = COMMAND_SLACK_S,
    workspace_dir: Path | None = None,
    egress_bind_host: str = "127.0.0.1",
    egress_host: str | None = None,
) -> WebDriver:
    """A fresh browser with a fresh profile: local Chromium, or a W3C Remote on a Grid.

    Every WebDriver command may take ``page_load_timeout_s + command_slack_s``; one that takes
    longer stops the browser (BrowserHung).

    The browser reaches nothing until a task names its origins (``egress_of(driver).allow``).
    ``egress_host`` is the proxy's address as the browser sees it: a Grid node must be able to
    reach it (bind it with ``egress_bind_host`` on an interface the node can reach)."""
    fence = _Fence(
        proxy=EgressProxy(bind_host=egress_bind_host, advertise_host=egress_host),
        folder=workspace.make_folder(workspace_dir or DEFAULT_ROOT, "browser"),
    )
    try:
        driver = _start(fence, chromium_path, chromedriver_path, remote_url, headless)
    except BaseException:
        _release(fence)
        raise
    driver._understudy_fence = fence  # type: ignore[attr-defined]
    try:
        _watch(driver, remote_url, page_load_timeout_s + command_slack_s, fence.kill)
        driver.set_page_load_timeout(page_load_timeout_s)
        _block_local_files(driver)
        # A fresh profile may open on the browser's own new-tab page; start where tasks expect.
        driver.get("about:blank")
    except BaseException:
        quit_quietly(driver)
        raise
    return driver


def _start(
    fence: _Fence,
    chromium_path: str,
    chromedriver_path: str,
    remote_url: str | None,
    headless: bool,
) -> WebDriver:
    if remote_url:
        # The Grid node owns its binaries and its profile; only the options travel.
        options = chrome_options(chromium_path=None, headless=headless)
        _fence_options(options, fence.proxy)
        driver: WebDriver = webdriver.Remote(command_executor=remote_url, options=options)
        driver.file_detector = LocalFileDetector()  # uploads travel to the Grid node
        return driver
    options = chrome_options(chromium_path=chromium_path, headless=headless)
    _fence_options(options, fence.proxy)
    options.add_argument(f"--user-data-dir={fence.folder / 'profile'}")
    scratch = fence.folder / "tmp"
    scratch.mkdir(mode=0o700)
    # Chromium makes Unix sockets in its temporary folder, and a socket path may hold only
    # 107 bytes: under a deep workspace root its scratch files stay in the system's temporary
    # folder (which the start-up sweep covers).
    tmp_env = {"TMPDIR": str(scratch)} if len(str(scratch)) <= _MAX_SCRATCH_PATH else {}
    service = _FencedService(
        fence,
        executable_path=chromedriver_path,
        # chromedriver's and Chromium's scratch files go in the browser's folder, not /tmp.
        # Crash reports and caches too: nothing of a browser outlives its folder.
        env={
            **os.environ,
            **tmp_env,
            "XDG_CONFIG_HOME": str(scratch),
            "XDG_CACHE_HOME": str(scratch),
        },
        # A group of its own, so the watchdog can kill chromedriver and Chromium together.
        popen_kw={"start_new_session": True},
    )
    return webdriver.Chrome(service=service, options=options)


class _WatchedConnection(ChromiumRemoteConnection):
    """The connection to chromedriver (or a Grid), with a time limit on every command.

    chromedriver serves one command at a time: once one gets no answer (its page's script never
    yields), none after it will either, so the browser is killed (``on_hang``) and this and
    every later command raise BrowserHung at once."""

    def __init__(self, address: str, timeout_s: float, on_hang: Callable[[], None]) -> None:
        config = ClientConfig(
            remote_server_addr=address,
            keep_alive=True,
            timeout=timeout_s,  # type: ignore[arg-type]
            # A command that timed out is not sent again: it would wait as long again.
            init_args_for_pool_manager={
                "init_args_for_pool_manager": {"retries": urllib3.Retry(3, read=False)}
            },
        )
        super().__init__(address, "goog", "chrome", client_config=config)
        self._on_hang = on_hang
        self.hung = False
        # What the dialogs answered so far said, each with the button pressed ("OK", "Cancel").
        self.dialogs: list[tuple[str, str]] = []
        self.answer = "accept"  # how the next dialog is answered (see :func:`answering_dialogs`)

    @contextmanager
    def time_limit(self, timeout_s: float) -> Iterator[None]:
        """Give the block's commands at most ``timeout_s`` (never more than the usual limit).
        The limit is read per request from this connection's own config; only the thread
        running the driver's task sends commands on it, so no other command sees the change."""
        config = self._client_config
        usual = config.timeout
        config.timeout = min(usual, timeout_s)  # type: ignore[assignment]
        try:
            yield
        finally:
            config.timeout = usual

    def execute(self, command: str, params: dict) -> dict:
        for _ in range(_DIALOGS_PER_COMMAND):
            response = self._execute(command, dict(params))  # (it takes the session id out)
            text = _dialog_text(response)
            if text is None:
                break
            # The command was not carried out: answer the dialog, then send it again.
            answer, button = _ANSWERS[self.answer]
            self._execute(answer, {"sessionId": params.get("sessionId")})
            self.dialogs.append((text, button))
        return response

    def _execute(self, command: str, params: dict) -> dict:
        if self.hung and command != Command.QUIT:
            raise BrowserHung(self._why())
        try:
            response = super().execute(command, params)
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.MaxRetryError) as exc:
            timed_out = getattr(exc, "reason", exc)
            if command == Command.QUIT or not isinstance(
                timed_out, urllib3.exceptions.ReadTimeoutError
            ):
                raise
            self._hang()
            raise BrowserHung(self._why()) from None
        # (an error's answer is the raw JSON text; a page's own text comes back as a success)
        failed = isinstance(response, dict) and int(response.get("status") or 0) >= 400
        if failed and command not in _MAY_LOAD and _RENDERER_STUCK in str(response.get("value")):
            self._hang()
            raise BrowserHung(self._why())
        return response

    def _hang(self) -> None:
        self.hung = True
        log.warning("the browser stopped answering; stopping it")
        self._on_hang()

    @staticmethod
    def _why() -> str:
        return "the page stopped answering (a script on it may never end); the browser was stopped"


def _dialog_text(response: dict) -> str | None:
    """The text of the dialog a command's error answer says was open, or None."""
    if not isinstance(response, dict) or int(response.get("status") or 0) < 400:
        return None
    try:
        error = json.loads(response.get("value") or "")["value"]
    except (TypeError, ValueError, KeyError):
        return None
    if not isinstance(error, dict) or error.get("error") != "unexpected alert open":
        return None
    data = error.get("data")
    return str(data.get("text", "")) if isinstance(data, dict) else ""


def take_dialogs(driver: WebDriver) -> list[tuple[str, str]]:
    """What the dialogs the browser answered since the last call said, in order, each with
    the button it was answered with ("OK" or "Cancel")."""
    executor = driver.command_executor
    if not isinstance(executor, _WatchedConnection):
        return []
    dialogs, executor.dialogs = executor.dialogs, []
    return dialogs


@contextmanager
def answering_dialogs(driver: WebDriver, answer: str | None) -> Iterator[None]:
    """Answer the dialogs the page shows during the block ``answer`` ("accept": OK, "dismiss":
    Cancel; a confirm() then returns false and a prompt() null; None: as outside it), then as
    before. Blocks nest: a step inside another answers as the outer one unless it says."""
    executor = driver.command_executor
    if answer is None or not isinstance(executor, _WatchedConnection):
        yield
        return
    if answer not in _ANSWERS:
        raise ValueError(f"no such answer to a dialog: {answer!r}")
    usual, executor.answer = executor.answer, answer
    try:
        yield
    finally:
        executor.answer = usual


def _watch(
    driver: WebDriver, remote_url: str | None, timeout_s: float, on_hang: Callable[[], None]
) -> None:
    """Put a time limit on each of the driver's commands (see :class:`_WatchedConnection`)."""
    address = remote_url or driver.service.service_url  # type: ignore[attr-defined]
    driver.command_executor = _WatchedConnection(address, timeout_s, on_hang)


class _FencedService(Service):
    """chromedriver's service, with the watchdog started the moment its process exists."""

    def __init__(self, fence: _Fence, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._fence = fence

    def _start_process(self, path: str) -> None:
        super()._start_process(path)
        group = self.process.pid
        workspace.write_owner(
            self._fence.folder, driver_pgid=group, driver_start=workspace.process_start(group)
        )
        _start_watchdog(self._fence, group)


def _release(fence: _Fence) -> None:
    """Stop the proxy, let the watchdog sweep the process group, delete the folder."""
    fence.proxy.close()
    if fence.watchdog_pipe is not None:
        os.close(fence.watchdog_pipe)  # EOF: the watchdog kills what is left, then exits
        fence.watchdog_pipe = None
    if fence.watchdog is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            fence.watchdog.wait(timeout=10)
    workspace.remove(fence.folder)


def is_alive(driver: WebDriver) -> bool:
    """Whether the browser still answers, within ALIVE_CHECK_S (a crashed renderer or driver
    does not, nor a page whose script never ends: that browser is stopped)."""
    executor = driver.command_executor
    limit = (
        executor.time_limit(ALIVE_CHECK_S)
        if isinstance(executor, _WatchedConnection)
        else contextlib.nullcontext()
    )
    try:
        with limit:
            driver.execute_script("return 1")
        return True
    except Exception as exc:  # any failure to answer means "do not reuse"
        log.warning(
            "the browser did not answer (%s); it is not used again", getattr(exc, "msg", exc)
        )
        return False


def _close_other_windows(driver: WebDriver) -> None:
    """Start the next task with the one window, whatever the last task's pages opened."""
    try:
        first, *others = driver.window_handles
        for handle in others:
            driver.switch_to.window(handle)
            driver.close()
        driver.switch_to.window(first)
    except Exception as exc:  # a browser that cannot do this is replaced on its next failure
        log.debug("could not close extra windows: %s", exc)


def quit_quietly(driver: WebDriver) -> None:
    """Quit, ignoring a browser that is already gone; then release its proxy and folder."""
    try:
        driver.quit()
    except Exception as exc:  # a dead driver cannot be quit more; the process is reaped anyway
        log.debug("quitting browser failed: %s", exc)
    fence: _Fence | None = getattr(driver, "_understudy_fence", None)
    if fence is not None:
        driver._understudy_fence = None  # type: ignore[attr-defined]
        _release(fence)


class BrowserPool:
    """One browser per worker process, reused only for consecutive tasks of one account.

    `with pool.session(account_key) as driver:` hands out the current browser if it belongs to
    the same key (the runner's: account, portal and credentials version), is alive and has
    served fewer than `max_tasks` tasks; otherwise it replaces it with a fresh one (fresh
    profile, so no cookies cross accounts, and new credentials sign in afresh).

    With ``spare`` (BROWSER_SPARE), the fresh browser is started ahead: after each task, on a
    thread of the pool's own, a spare browser is started if there is none, and the next task
    that needs a fresh browser takes it instead of waiting for a start. The browser it replaces
    quits on that thread too. A spare has never been handed out and reaches nothing until a
    task names its origins, so it belongs to no account until it is taken. Without ``spare``, a
    task that needs a fresh browser waits for the old one to quit and the new one to start, and
    the process never holds more than one browser.
    """

    def __init__(
        self, factory: Callable[[], WebDriver], *, max_tasks: int = 50, spare: bool = False
    ) -> None:
        self._factory = factory
        self._max_tasks = max_tasks
        self._spare_wanted = spare
        self._driver: WebDriver | None = None
        self._key: Hashable | None = None
        self._served = 0
        self._spare: Future[WebDriver] | None = None
        # Starts spares and quits replaced browsers, one at a time, off the tasks' path.
        self._background: ThreadPoolExecutor | None = None
        self.started = 0  # browsers started so far, spares included, for tests and metrics

    @contextmanager
    def session(self, account_key: Hashable) -> Iterator[WebDriver]:
        """A browser for `account_key`; discarded afterwards if the task broke it."""
        driver = self._acquire(account_key)
        try:
            yield driver
        except (TaskCanceled, LeftPortal):
            # A canceled task may have left a form half filled, and a page that tried to leave
            # the portal may still be trying: close the browser, start clean.
            self._discard()
            raise
        except AgentError:
            # The portal misbehaved, not the browser; still, never reuse one that died.
            if not is_alive(driver):
                self._discard()
            raise
        except BaseException:
            # Unknown failure (e.g. WebDriverException): the browser's state is suspect.
            self._discard()
            raise
        finally:
            self._served += 1
            self.prepare()

    @property
    def is_open(self) -> bool:
        """Whether a browser is running and kept for the next task."""
        return self._driver is not None

    def prepare(self) -> None:
        """Start a spare browser in the background, if the pool keeps one and has none."""
        if self._spare_wanted and self._spare is None:
            self._spare = self._in_background(self._start)

    def _acquire(self, account_key: Hashable) -> WebDriver:
        if self._driver is not None and not self._reusable(account_key):
            self._discard()
        if self._driver is not None:
            _close_other_windows(self._driver)
            metrics.TASK_BROWSERS.labels("reused").inc()
            return self._driver
        driver = self._take_spare()
        metrics.TASK_BROWSERS.labels("spare" if driver is not None else "started").inc()
        self._driver = driver or self._start()
        self._key, self._served = account_key, 0
        return self._driver

    def _start(self) -> WebDriver:
        driver = self._factory()
        self.started += 1
        metrics.BROWSERS.inc()
        return driver

    def _take_spare(self) -> WebDriver | None:
        """The spare browser (waiting for it if it is still starting), or None if there is
        none or it did not start or died while it waited."""
        if self._spare is None:
            return None
        try:
            # Kept until it is known: a time limit striking while this waits leaves the spare to
            # the next task, or to close().
            driver = self._spare.result()
        except Exception as exc:  # the task starts one itself, and fails there if it must
            log.warning("the spare browser did not start: %s", exc)
            return None
        finally:
            if self._spare is not None and self._spare.done():
                self._spare = None
        if is_alive(driver):
            return driver
        self._retire(driver)
        return None

    def _reusable(self, account_key: Hashable) -> bool:
        if self._key != account_key or self._served >= self._max_tasks:
            return False
        assert self._driver is not None
        return is_alive(self._driver)

    def _discard(self) -> None:
        """Drop the current browser."""
        driver, self._driver, self._key, self._served = self._driver, None, None, 0
        if driver is not None:
            self._retire(driver)

    def _retire(self, driver: WebDriver) -> None:
        """Quit a browser: in the background when the pool keeps a spare, else at once."""
        if self._spare_wanted:
            self._in_background(self._quit, driver)
        else:
            self._quit(driver)

    @staticmethod
    def _quit(driver: WebDriver) -> None:
        quit_quietly(driver)
        metrics.BROWSERS.dec()

    def _in_background(self, work: Callable[..., Any], *args: Any) -> Future:
        if self._background is None:
            self._background = ThreadPoolExecutor(1, thread_name_prefix="browser-pool")
        return self._background.submit(work, *args)

    def close(self) -> None:
        """Quit every browser, the spare included, and wait for them; call on worker shutdown."""
        spare, self._spare = self._spare, None
        self._spare_wanted = False  # what closes now closes at once
        self._discard()
        if spare is not None and not spare.cancel():
            with contextlib.suppress(Exception):  # a spare that failed to start left nothing
                self._quit(spare.result())
        if self._background is not None:
            self._background.shutdown(wait=True)
            self._background = None
