"""The operator console in real headless Chromium, against the whole stack (`understudy run`):
sign in, the live trajectory of a running task, a clinic's CSV sent as a batch, an MFA code, a
webhook redelivered, the SOP editor's line numbers, a claim approved or rejected on review, the
portal profile editor, CSRF and roles. Each page is saved for docs/console.md (into docs/console/
with `make screenshots`).

One browser for the module; each test signs in afresh (the tables are emptied between tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from api.openapi import TASK_EXAMPLES
from cli.local import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET, SANDBOX_USERNAME
from shared import totp, users
from shared.accounts import Credentials, put_credentials
from shared.sop.library import builtin_sop_text

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def browser(settings) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = settings.chromium_path
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1280,900"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(settings.chromedriver_path))
    yield driver
    driver.quit()


@pytest.fixture
def console(e2e, browser, doc_shots) -> Iterator[Console]:
    # Quick hurdles (short spinners, no random modal): the tests watch the console, not them.
    e2e.sandbox_faults(spinner_s=0.2, slow_page_s=0.2, modal="never")
    browser.delete_all_cookies()
    yield Console(e2e.api_url, browser, doc_shots / "console")


class Console:
    def __init__(self, api_url: str, driver: webdriver.Chrome, shots: Path) -> None:
        self.url = f"{api_url}/console"
        self.shots = shots
        self.api_url = api_url
        self.driver = driver

    def open(self, path: str) -> None:
        self.driver.get(f"{self.url}{path}")

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(self, condition, timeout_s: float = 90):
        # The live part of a task's page is swapped in as it changes: an element found a moment
        # ago may be gone, so look again.
        return WebDriverWait(
            self.driver, timeout_s, poll_frequency=0.2,
            ignored_exceptions=[StaleElementReferenceException],
        ).until(lambda _d: condition())  # fmt: skip

    def let_polls_pass(self, count: int) -> None:
        """Wait until the live part's poll has fetched and shown its fragment `count` times from
        now: the next poll starts only after the last one's fragment was compared and swapped in."""
        self.driver.execute_script(
            "window.__polls = 0; const original = window.fetch;"
            "window.fetch = (...args) => { window.__polls += 1; return original(...args); };"
        )
        self.wait(lambda: self.driver.execute_script("return window.__polls") > count, 30)

    def sign_in(self, email: str, password: str = PASSWORD, *, refused: bool = False) -> None:
        self.driver.delete_all_cookies()
        self.open("/login")
        self.find("input[name=email]").send_keys(email)
        self.find("input[name=password]").send_keys(password)
        self.find("#login-form button[type=submit]").click()
        self.wait(lambda: self.all("#login-error" if refused else "#signed-in-as"), 30)

    def shot(self, name: str) -> None:
        self.shots.mkdir(parents=True, exist_ok=True)
        height = self.driver.execute_script("return document.body.scrollHeight")
        self.driver.set_window_size(1280, max(600, min(int(height) + 40, 2400)))
        assert self.driver.save_screenshot(str(self.shots / f"{name}.png"))
        self.driver.set_window_size(1280, 900)


def make_user(runtime, account_id: int, email: str, role: str) -> None:
    with runtime.pool.connection() as conn:
        token = users.invite_user(
            conn, account_id=account_id, email=email, role=role, ttl_s=60, limit=100
        )
        users.accept_invite(conn, token, PASSWORD)


def post_task(e2e, account, task_type: str = "check_eligibility") -> int:
    return e2e.post_task(account, task_type, TASK_EXAMPLES[task_type])["id"]


def test_sign_in_refuses_a_wrong_password_then_lets_the_right_one_in(
    console, runtime, make_account
):
    account = make_account()
    make_user(runtime, account.id, "ada@clinic.test", "admin")
    console.sign_in("ada@clinic.test", "not the password", refused=True)
    assert console.find("#login-error").text == "The email or the password is wrong."
    assert "/console/login" in console.driver.current_url
    console.shot("login")

    console.sign_in("ada@clinic.test")
    console.wait(lambda: console.all("#signed-in-as"))
    assert console.find("#signed-in-as").text == "ada@clinic.test (admin)"
    assert console.driver.current_url.endswith("/console/tasks")
    cookie = console.driver.get_cookie("understudy_console")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    # invite a colleague from the users page: the one-time link is shown
    console.open("/users")
    console.find("#invite-user-form input[name=email]").send_keys("bo@clinic.test")
    console.find("#invite-user-form button").click()
    link = console.wait(lambda: console.all("#invite-link"))[0].text
    assert "/console/invite/" in link
    console.shot("users")


def test_a_running_tasks_timeline_fills_live_with_screenshots(console, e2e, make_account, runtime):
    # given an SOP that screenshots every step, and a task just created
    account = make_account()
    make_user(runtime, account.id, "op@clinic.test", "operator")
    sop = builtin_sop_text("check_eligibility").replace(
        "screenshots: failures", "screenshots: every_step", 1
    )
    put = requests.put(f"{e2e.api_url}/sops/check_eligibility", data=sop, timeout=10,
                       headers={**account.headers, "Content-Type": "application/yaml"})  # fmt: skip
    assert put.status_code == 201, put.text
    task_id = post_task(e2e, account)
    console.sign_in("op@clinic.test")
    console.open(f"/tasks/{task_id}")
    console.driver.execute_script("window.notReloaded = true;")
    assert console.find("#task-status").text in ("pending", "dispatching", "running")
    # when it runs, the timeline grows on the same page, with screenshots
    console.wait(lambda: len(console.all("#timeline li.step")) >= 3)
    console.wait(lambda: console.all("#timeline img.shot"))
    console.wait(lambda: console.find("#task-status").text == "completed", timeout_s=120)
    assert console.driver.execute_script("return window.notReloaded === true;")
    steps = console.all("#timeline li.step")
    assert len(steps) >= 5
    assert "Sandbox Gold PPO" in console.find("#task-notes").text
    shot = console.find("#timeline img.shot")
    assert console.driver.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0;", shot
    )
    console.shot("task")
    console.open("/tasks")
    assert console.find(f'tr[data-task-id="{task_id}"] .status').text == "completed"
    console.shot("tasks")


def test_a_clinics_csv_becomes_a_batch_whose_page_follows_it_live(
    console, e2e, make_account, runtime, tmp_path
):
    # given an operator with a CSV export of a clinic day, one row missing its member id
    account = make_account()
    make_user(runtime, account.id, "op@clinic.test", "operator")
    rows = ["W100000001,Jane Doe,1990-01-15", ",John Roe,1985-06-30",
            "W100000001,Jane Doe,01/15/1990"]  # fmt: skip
    day = tmp_path / "clinic-day.csv"
    day.write_text("member_id,patient,dob\n" + "\n".join(rows) + "\n")
    console.sign_in("op@clinic.test")

    def send() -> None:
        console.find("#batch-form input[type=file]").send_keys(str(day))
        console.find("#batch-form select[name=type] option[value=check_eligibility]").click()
        console.find("#batch-form button[type=submit]").click()

    # when it is sent from the "New tasks" page
    console.find("#new-tasks").click()
    send()
    # then nothing is created, and the bad row is named by its line in the file
    problems = console.wait(lambda: console.all("#batch-problems"), 30)[0].text
    assert "line 3 member_id" in problems
    console.shot("batch_new")
    assert requests.get(f"{e2e.api_url}/tasks", headers=account.headers,
                        timeout=10).json()["data"] == []  # fmt: skip
    # and once the row is fixed and the file sent again, the batch's page follows its tasks
    day.write_text(day.read_text().replace(",John Roe", "W200000002,John Roe"))
    send()
    console.wait(lambda: console.all("#batch-progress"), 30)
    console.driver.execute_script("window.notReloaded = true;")
    console.wait(lambda: "3 of 3 ended" in console.find("#batch-progress").text, 180)
    assert console.driver.execute_script("return window.notReloaded === true;")
    statuses = [e.text for e in console.all("#batch-tasks .status")]
    # (John Roe's coverage ended in 2024: the check completes with that issue noted)
    assert statuses == ["completed", "completed_with_issues", "completed"]
    assert "finished" in console.find("#batch-progress").text
    console.shot("batch")


def test_an_mfa_code_entered_in_the_console_lets_the_task_complete(
    console, e2e, make_account, runtime
):
    # given credentials without a TOTP secret: the portal's code must come from a person
    account = make_account(sandbox=False)
    with runtime.pool.connection() as conn:
        creds = Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD, None)
        put_credentials(conn, runtime.fernet, account.id, "sandbox", creds)
    make_user(runtime, account.id, "op@clinic.test", "operator")
    task_id = post_task(e2e, account)
    console.sign_in("op@clinic.test")
    console.open(f"/tasks/{task_id}")
    # the form appears live once the task waits
    console.wait(lambda: console.all("#mfa-form input[name=code]"), timeout_s=120)
    assert console.wait(lambda: console.find("#task-status").text) == "waiting_for_input"

    def type_code() -> bool:
        field = console.find("#mfa-form input[name=code]")
        field.click()  # once it has the focus, the live update leaves the form alone
        field.send_keys(totp.code(SANDBOX_TOTP_SECRET))
        return True

    console.wait(type_code)
    console.shot("mfa")
    console.find("#mfa-form button").click()
    console.wait(lambda: console.all("#notice"))
    console.wait(lambda: console.find("#task-status").text == "completed", timeout_s=120)
    console.open("/audit")
    entries = [row.text for row in console.all("#audit-list tr.audit-entry")]
    assert any("op@clinic.test task.input task:" in e for e in entries), entries
    console.shot("audit")


def test_redelivering_a_failed_webhook_adds_an_attempt(console, e2e, make_account, runtime,
                                                       receiver):  # fmt: skip
    # given a ping whose every scheduled attempt got a 500
    account = make_account(webhook_url=receiver.url)
    make_user(runtime, account.id, "op@clinic.test", "operator")
    receiver.script = [500, 500, 500, 500]
    ping = requests.post(f"{e2e.api_url}/webhook-endpoint/test", headers=account.headers,
                         timeout=10).json()  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        message = requests.get(f"{e2e.api_url}/webhooks/messages/{ping['id']}",
                               headers=account.headers, timeout=10).json()  # fmt: skip
        if message["status"] == "failed":
            break
        time.sleep(0.3)
    assert message["status"] == "failed", message
    console.sign_in("op@clinic.test")
    console.open("/webhooks")
    assert console.find(f'tr[data-message-id="{ping["id"]}"] .status').text == "failed"
    console.shot("webhooks")
    console.find(f'tr[data-message-id="{ping["id"]}"] a').click()
    assert [a.text for a in console.all("#attempts tr.attempt td.code")] == ["500"] * 4
    # when an operator redelivers it (the receiver now answers 200)
    console.find("#redeliver-form button").click()
    assert "Queued again" in console.wait(lambda: console.all("#notice"))[0].text

    def delivered() -> bool:
        console.driver.refresh()
        return console.find("#message-status").text == "delivered"

    console.wait(delivered, timeout_s=60)
    # then a fifth attempt, a 200, is listed
    codes = [a.text for a in console.all("#attempts tr.attempt td.code")]
    assert codes == ["500"] * 4 + ["200"]
    assert len(receiver.requests) == 5
    console.shot("webhook_message")


def test_the_sop_editor_names_the_line_of_an_error_then_saves_and_diffs(
    console, make_account, runtime
):
    account = make_account()
    make_user(runtime, account.id, "ada@clinic.test", "admin")
    console.sign_in("ada@clinic.test")
    console.open("/sops/check_eligibility/edit")
    text = console.find("#sop-text").get_attribute("value")
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if "- click:" in line)
    broken = list(lines)
    broken[index] = broken[index].replace("- click:", "- teleport:", 1)
    console.driver.execute_script(
        "document.getElementById('sop-text').value = arguments[0];", "\n".join(broken)
    )
    console.find("#sop-form button").click()
    errors = console.wait(lambda: console.all("#sop-errors li.sop-error"))
    assert any(e.text.startswith(f"line {index + 1}:") for e in errors), [e.text for e in errors]
    assert console.find(f"#L{index + 1}").get_attribute("class") == "bad"
    console.shot("sop_edit")
    # fixed, it is saved as version 1, and the diff against the built-in one shows the change
    fixed = text.replace("Check eligibility and benefits", "Eligibility and benefits", 1)
    console.driver.execute_script(
        "document.getElementById('sop-text').value = arguments[0];", fixed
    )
    console.find("#sop-form button").click()
    assert "Saved as a new version" in console.wait(lambda: console.all("#notice"))[0].text
    console.shot("sop")
    console.find("#diff-form button").click()
    added = console.wait(lambda: console.all("#diff .d-add"))
    assert any("Eligibility and benefits" in line.text for line in added)
    console.shot("sop_diff")


def test_csrf_and_roles_hold_in_the_browser(console, e2e, make_account, runtime):
    account = make_account(webhook_url="http://127.0.0.1:9/hook")
    make_user(runtime, account.id, "op@clinic.test", "operator")
    make_user(runtime, account.id, "viewer@clinic.test", "viewer")
    ping = requests.post(f"{e2e.api_url}/webhook-endpoint/test", headers=account.headers,
                         timeout=10).json()  # fmt: skip
    # a form whose CSRF token was removed is refused with 400
    console.sign_in("op@clinic.test")
    console.open("/webhooks")
    console.driver.execute_script(
        "document.querySelector('#recover-form input[name=csrf_token]').remove();"
        "document.querySelector('#recover-form input[name=since]').value = '2026-01-01T00:00';"
    )
    console.find("#recover-form button").click()
    console.wait(lambda: console.all("#error-message"))
    assert console.find("h1").text == "400"
    assert "CSRF token is missing or wrong" in console.find("#error-message").text
    # a viewer sees no buttons to act with, and a forged POST (with their own token) is a 403
    console.sign_in("viewer@clinic.test")
    console.open(f"/webhooks/messages/{ping['id']}")
    assert console.all("#redeliver-form") == [] and console.all("#recover-form") == []
    status = console.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const token = document.querySelector('input[name=csrf_token]').value;"
        "fetch(arguments[0], {method: 'POST', headers: {'X-CSRF-Token': token}})"
        ".then(r => done(r.status));",
        f"{console.url}/webhooks/messages/{ping['id']}/redeliver",
    )
    assert status == 403
    console.open("/sops/check_eligibility/edit")
    assert console.find("h1").text == "403"


def test_a_reviewed_claim_reaches_the_payer_once_when_approved_and_never_when_rejected(
    console, e2e, make_account, runtime
):
    # given an account that requires review before a claim is submitted, and two claims
    account = make_account()
    make_user(runtime, account.id, "op@clinic.test", "operator")
    put = requests.put(f"{e2e.api_url}/settings", json={"review_required_types": ["submit_claim"]},
                       headers=account.headers, timeout=10)  # fmt: skip
    assert put.status_code == 200, put.text
    rejected, approved = (post_task(e2e, account, "submit_claim") for _ in range(2))
    for task_id in (rejected, approved):
        e2e.wait_for_task(account, task_id, {"pending_review"}, timeout_s=120)

    def claims() -> list[dict]:
        return requests.get(f"{e2e.sandbox_url}/__sandbox/submissions", timeout=5).json()["claims"]

    assert claims() == []
    console.sign_in("op@clinic.test")
    # when an operator rejects the first with a note
    console.open(f"/tasks/{rejected}")
    console.wait(lambda: console.all("#review-form textarea[name=note]"))
    console.find("#review-form textarea[name=note]").send_keys("Wrong diagnosis code")
    console.find('#review-form button[value="reject"]').click()
    assert "Decision recorded" in console.wait(lambda: console.all("#notice"))[0].text
    console.wait(lambda: console.find("#task-status").text == "completed_with_issues", 30)
    # then nothing reached the payer
    assert claims() == []
    # when they approve the second
    console.open(f"/tasks/{approved}")
    [form] = console.wait(lambda: console.all("#review-form"))
    assert console.find("#task-status").text == "pending_review"
    console.shot("review")
    # and the form under their pointer is not redrawn by the page's polls while nothing changes
    console.let_polls_pass(2)
    assert console.find("#review-form") == form
    console.find('#review-form button[value="approve"]').click()
    assert "Decision recorded" in console.wait(lambda: console.all("#notice"))[0].text
    # then the agent submits it, exactly once
    console.wait(lambda: console.find("#task-status").text == "completed", timeout_s=120)
    [claim] = claims()
    assert claim["reference"] in console.find("#task-notes").text
    console.open("/audit")
    entries = [row.text for row in console.all("#audit-list tr.audit-entry")]
    assert any(f"task.review.approve task:{approved}" in e for e in entries), entries
    assert any(f"task.review.reject task:{rejected}" in e for e in entries), entries


def test_the_portal_profile_editor_names_the_line_of_an_error_then_saves(
    console, make_account, runtime
):
    account = make_account()
    make_user(runtime, account.id, "ada@clinic.test", "admin")
    console.sign_in("ada@clinic.test")
    console.open("/settings")  # (the settings page, for docs/console.md)
    assert console.find("input[name=retention_days]").get_attribute("value") == "90"
    console.shot("settings")
    console.open("/portals")
    console.find('#portal-list a[href$="/portals/sandbox/profile"]').click()
    console.find("#edit-profile").click()
    text = console.find("#profile-text").get_attribute("value")
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("title:"))
    broken = [*lines[: index + 1], "colour: blue", *lines[index + 1 :]]
    console.driver.execute_script(
        "document.getElementById('profile-text').value = arguments[0];", "\n".join(broken)
    )
    console.find("#profile-form button").click()
    errors = console.wait(lambda: console.all("#sop-errors li.sop-error"))
    assert any(e.text.startswith(f"line {index + 2}:") for e in errors), [e.text for e in errors]
    assert console.find(f"#L{index + 2}").get_attribute("class") == "bad"
    console.shot("profile_edit")
    fixed = text.replace("title: Sandbox Payer Portal", "title: Our sandbox", 1)
    console.driver.execute_script(
        "document.getElementById('profile-text').value = arguments[0];", fixed
    )
    console.find("#profile-form button").click()
    assert "Saved as a new version" in console.wait(lambda: console.all("#notice"))[0].text
    assert [r.text.split()[0] for r in console.all("#profile-history tbody tr")] == ["1"]
    console.find("#diff-form button").click()
    added = console.wait(lambda: console.all("#diff .d-add"))
    assert any("title: Our sandbox" in line.text for line in added)
