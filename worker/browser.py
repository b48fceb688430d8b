"""Starting headless Chromium, and keeping one browser per worker process between tasks.

Binary and driver paths are always explicit so Selenium Manager never downloads anything.
A browser (and its profile, cookies included) is only ever reused for the same account.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.file_detector import LocalFileDetector
from selenium.webdriver.remote.webdriver import WebDriver

from worker.errors import AgentError, TaskCanceled

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
)


def chrome_options(*, chromium_path: str | None, headless: bool = True) -> Options:
    """ChromeOptions shared by local and remote (Grid) browsers."""
    options = Options()
    if chromium_path:
        options.binary_location = chromium_path
    for flag in HEADLESS_FLAGS:
        if flag.startswith("--headless") and not headless:
            continue
        options.add_argument(flag)
    # A password manager bubble or translate bar would cover the portal's own UI.
    options.add_experimental_option(
        "prefs", {"credentials_enable_service": False, "profile.password_manager_enabled": False}
    )
    options.add_argument("--disable-features=Translate,PasswordLeakDetection")
    return options


def new_driver(
    *,
    chromium_path: str,
    chromedriver_path: str,
    remote_url: str | None = None,
    headless: bool = True,
    page_load_timeout_s: float = 30.0,
) -> WebDriver:
    """A fresh browser with a fresh profile: local Chromium, or a W3C Remote on a Grid."""
    if remote_url:
        # The Grid node owns its binaries; only the options travel.
        options = chrome_options(chromium_path=None, headless=headless)
        driver: WebDriver = webdriver.Remote(command_executor=remote_url, options=options)
        driver.file_detector = LocalFileDetector()  # uploads travel to the Grid node
    else:
        options = chrome_options(chromium_path=chromium_path, headless=headless)
        service = Service(executable_path=chromedriver_path)
        driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(page_load_timeout_s)
    return driver


def is_alive(driver: WebDriver) -> bool:
    """Whether the browser still answers (a crashed renderer or driver does not)."""
    try:
        driver.execute_script("return 1")
        return True
    except Exception:  # any failure to answer means "do not reuse"
        return False


def quit_quietly(driver: WebDriver) -> None:
    """Quit, ignoring a browser that is already gone."""
    try:
        driver.quit()
    except Exception as exc:  # a dead driver cannot be quit more; the process is reaped anyway
        log.debug("quitting browser failed: %s", exc)


class BrowserPool:
    """One browser per worker process, reused only for consecutive tasks of one account.

    `with pool.session(account_key) as driver:` hands out the current browser if it belongs to
    the same account, is alive and has served fewer than `max_tasks` tasks; otherwise it quits
    it and starts a fresh one (fresh profile, so no cookies cross accounts).
    """

    def __init__(self, factory: Callable[[], WebDriver], *, max_tasks: int = 50) -> None:
        self._factory = factory
        self._max_tasks = max_tasks
        self._driver: WebDriver | None = None
        self._key: Hashable | None = None
        self._served = 0
        self.started = 0  # browsers started so far, for tests and metrics

    @contextmanager
    def session(self, account_key: Hashable) -> Iterator[WebDriver]:
        """A browser for `account_key`; discarded afterwards if the task broke it."""
        driver = self._acquire(account_key)
        try:
            yield driver
        except TaskCanceled:
            # A canceled task may have left a form half filled: close the browser, start clean.
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

    @property
    def is_open(self) -> bool:
        """Whether a browser is running and kept for the next task."""
        return self._driver is not None

    def _acquire(self, account_key: Hashable) -> WebDriver:
        if self._driver is not None and not self._reusable(account_key):
            self._discard()
        if self._driver is None:
            self._driver = self._factory()
            self._key, self._served = account_key, 0
            self.started += 1
        return self._driver

    def _reusable(self, account_key: Hashable) -> bool:
        if self._key != account_key or self._served >= self._max_tasks:
            return False
        assert self._driver is not None
        return is_alive(self._driver)

    def _discard(self) -> None:
        if self._driver is not None:
            quit_quietly(self._driver)
        self._driver, self._key, self._served = None, None, 0

    def close(self) -> None:
        """Quit the browser; call on worker shutdown."""
        self._discard()
