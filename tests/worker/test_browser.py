"""new_driver and BrowserPool: real Chromium, one browser per account at a time."""

from __future__ import annotations

import functools
import time

import pytest
from prometheus_client import REGISTRY, generate_latest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By

from shared.settings import SettingsError, load_settings
from tests.scrape import delta, parse
from tests.worker.conftest import CHROMEDRIVER, CHROMIUM, _require_browser
from tests.worker.support import JANE, PLAIN_USER, run_builtin
from worker.browser import BrowserPool, is_alive, new_driver
from worker.errors import StepFailed
from worker.tasks import new_pool


@pytest.fixture
def pool():
    _require_browser()
    factory = functools.partial(new_driver, chromium_path=CHROMIUM, chromedriver_path=CHROMEDRIVER)
    pool = BrowserPool(factory, max_tasks=3)
    yield pool
    pool.close()


def test_headless_driver_has_the_window_size(pool) -> None:
    with pool.session("acct-1") as driver:
        assert driver.execute_script("return [window.outerWidth, navigator.webdriver]") == [
            1280,
            True,
        ]


def test_same_account_reuses_browser_and_session(pool, portal, recorder) -> None:
    # given a first task that signed in
    base_url = portal()
    with pool.session("acct-1") as first:
        run_builtin(first, "check_eligibility", JANE, base_url, credentials=PLAIN_USER)

    # when the next task of the same account runs
    with pool.session("acct-1") as second:
        outcome = run_builtin(
            second, "check_eligibility", JANE, base_url, credentials=PLAIN_USER, recorder=recorder
        )

    # then it gets the same browser, still signed in
    assert second is first and pool.started == 1
    assert outcome.status == "completed" and recorder.steps[0].message == "already signed in"
    # and the prelude's page, which the sign-in found it signed in on, is not loaded again
    prelude_goto = recorder.steps[1]
    assert prelude_goto.name == "p1. Go to /dashboard"
    assert prelude_goto.message == "already open: the sign-in found it signed in"
    # and the prelude reads the payer the dashboard names, and does not choose it again
    assert [(step.name, step.message) for step in recorder.steps[2:4]] == [
        ("p2. See which payer the session has", "payer_chosen = True"),
        ("p3. Choose the payer unless it is chosen already", "false"),
    ]
    assert recorder.named("p3.1.") == []
    # and what the prelude read is the portal's business, not the task's result
    assert "payer_chosen" not in outcome.result


def test_a_session_that_has_another_payer_chooses_the_tasks(pool, portal, recorder) -> None:
    # given a first task that chose another payer than the default
    base_url = portal()
    with pool.session("acct-1") as first:
        run_builtin(
            first,
            "check_eligibility",
            JANE + "\npayer: Acme Mutual",
            base_url,
            credentials=PLAIN_USER,
        )

    # when the next task, which names no payer, runs in that session
    with pool.session("acct-1") as second:
        outcome = run_builtin(
            second, "check_eligibility", JANE, base_url, credentials=PLAIN_USER, recorder=recorder
        )
        second.get(f"{base_url}/dashboard")
        current = second.find_element(By.CSS_SELECTOR, "p.current").text

    # then its prelude chose the default payer again, and the session has it
    assert outcome.status == "completed", recorder.text()
    [chose] = recorder.named("p3.1. Choose the payer")
    assert chose.message == "chose Sandbox Health"
    assert current == "Current payer: Sandbox Health"


def test_other_account_gets_a_fresh_browser(pool, portal, recorder) -> None:
    base_url = portal()
    with pool.session("acct-1") as first:
        run_builtin(first, "check_eligibility", JANE, base_url, credentials=PLAIN_USER)
    with pool.session("acct-2") as second:
        outcome = run_builtin(
            second, "check_eligibility", JANE, base_url, credentials=PLAIN_USER, recorder=recorder
        )
    assert second is not first and pool.started == 2
    assert outcome.status == "completed"
    assert not is_alive(first)  # the other account's browser was quit
    assert recorder.steps[0].message == "signed in"  # no cookies carried over


@pytest.fixture
def spare_pool():
    """A pool that keeps a spare browser, and every browser its factory started, in order."""
    _require_browser()
    started = []

    def factory():
        driver = new_driver(chromium_path=CHROMIUM, chromedriver_path=CHROMEDRIVER)
        started.append(driver)
        return driver

    pool = BrowserPool(factory, max_tasks=3, spare=True)
    yield pool, started
    pool.close()


def _eventually(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.05)


def test_another_accounts_task_takes_the_browser_started_ahead(spare_pool, portal, recorder):
    pool, started = spare_pool
    before = parse(generate_latest(REGISTRY).decode())
    # given a first task, in the one browser the pool had to start for it
    base_url = portal()
    with pool.session("acct-1") as first:
        run_builtin(first, "check_eligibility", JANE, base_url, credentials=PLAIN_USER)
    assert started == [first]
    # and the spare the pool starts after a task, in the background
    _eventually(lambda: len(started) == 2, "started a spare browser")

    # when another account's task runs
    with pool.session("acct-2") as second:
        browsers_during_the_task = list(started)
        outcome = run_builtin(
            second, "check_eligibility", JANE, base_url, credentials=PLAIN_USER, recorder=recorder
        )

    # then it ran in the spare, started before it: it waited for no browser
    assert second is started[1] and browsers_during_the_task == started[:2]
    # and the spare carried nothing over: the task signed in afresh
    assert outcome.status == "completed", recorder.text()
    assert recorder.steps[0].message == "signed in"
    # and the first account's browser quits, off the task's path
    _eventually(lambda: not is_alive(first), "quit the first account's browser")
    # and the next spare is started for the account after
    _eventually(lambda: len(started) == 3, "started the next spare")
    # and operators see which browser each task got
    with pool.session("acct-2") as third:
        assert third is second
    after = parse(generate_latest(REGISTRY).decode())
    browsers = "understudy_task_browsers_total"
    assert [
        delta(before, after, browsers, browser=how) for how in ("started", "spare", "reused")
    ] == [
        1,
        1,
        1,
    ]


def test_close_quits_the_spare_too(spare_pool) -> None:
    pool, started = spare_pool
    with pool.session("acct-1"):
        pass
    _eventually(lambda: len(started) == 2, "started a spare browser")
    pool.close()
    assert not any(is_alive(driver) for driver in started)


def test_a_spare_is_kept_by_default_but_not_on_a_selenium_grid() -> None:
    assert load_settings({}).browser_spare is True
    assert load_settings({"SELENIUM_REMOTE_URL": "http://grid:4444"}).browser_spare is False
    both = {"SELENIUM_REMOTE_URL": "http://grid:4444", "BROWSER_SPARE": "true"}
    assert load_settings(both).browser_spare is True
    assert load_settings({"BROWSER_SPARE": "false"}).browser_spare is False


def test_the_workers_browsers_wait_as_long_as_the_settings_say(tmp_path) -> None:
    # Given a worker configured for a slow portal's pages
    _require_browser()
    settings = load_settings(
        {
            "CHROMIUM_PATH": CHROMIUM,
            "CHROMEDRIVER_PATH": CHROMEDRIVER,
            "WORKSPACE_DIR": str(tmp_path),
            "BROWSER_SPARE": "false",
            "BROWSER_PAGE_LOAD_TIMEOUT_S": "45",
            "BROWSER_COMMAND_SLACK_S": "20",
        }
    )
    pool = new_pool(settings)
    try:
        # When it starts a browser for a task
        with pool.session("acct-1") as driver:
            # Then pages may take 45 s to load, and a command 65 s before the browser is stopped
            assert driver.timeouts.page_load == 45
            assert driver.command_executor._client_config.timeout == 65
    finally:
        pool.close()


@pytest.mark.parametrize("name", ["BROWSER_PAGE_LOAD_TIMEOUT_S", "BROWSER_COMMAND_SLACK_S"])
def test_a_browser_wait_of_zero_is_refused_at_start(name) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: "0"})


def test_restart_after_max_tasks(pool) -> None:
    drivers = []
    for _ in range(4):
        with pool.session("acct-1") as driver:
            drivers.append(driver)
    assert drivers[0] is drivers[1] is drivers[2]
    assert drivers[3] is not drivers[0] and pool.started == 2


def test_restart_after_a_crash(pool) -> None:
    with pool.session("acct-1") as first:
        first.quit()  # the browser dies under the task
    with pool.session("acct-1") as second:
        assert second is not first and is_alive(second)


def test_browser_error_discards_the_browser_but_agent_errors_keep_it(pool) -> None:
    with pytest.raises(StepFailed), pool.session("acct-1") as first:
        raise StepFailed("portal said no")
    with pytest.raises(WebDriverException), pool.session("acct-1") as second:
        assert second is first
        raise WebDriverException("renderer gone")
    with pool.session("acct-1") as third:
        assert third is not first and pool.started == 2


def test_close_quits_the_browser(pool) -> None:
    with pool.session("acct-1") as driver:
        pass
    pool.close()
    assert not is_alive(driver)
