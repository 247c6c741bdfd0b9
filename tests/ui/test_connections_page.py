"""The connections page in a real browser: create a connection through the form, see whether its key's env var
is set, Test it against the fake LLM server; the key's value is never in any page. An LLM judge scorer picks
the connection in the rule form."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import ServiceProcess
from tests.integration.test_jobs import call, make_rule, send
from tests.ui.browsing import new_page
from tests.ui.test_rules_pages import element, fill
from tests.waiting import eventually

SECRET = "sk-uirules-0123456789-very-secret"
KEY_ENV = "UIRULES_JUDGE_KEY"


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(api_key=SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {KEY_ENV: SECRET, "TRACEJUDGE_JOBS__SETTLE_S": "0.2", "TRACEJUDGE_JOBS__POLL_S": "0.2",
           "TRACEJUDGE_JOBS__PAGE_TRACES": "4"}  # fmt: skip
    service = ServiceProcess(tmp_path_factory.mktemp("uiconn") / "data", env=env).start()
    send(service, time.time_ns() - 600 * 10**9)
    yield service
    assert service.stop() == 0, service.output


def no_secret(browser: webdriver.Chrome) -> None:
    assert SECRET not in browser.page_source
    assert SECRET not in browser.find_element(By.TAG_NAME, "html").get_attribute("outerHTML")


def create(browser: webdriver.Chrome, svc: ServiceProcess, name: str, base_url: str, key_env: str) -> None:
    browser.get(svc.api + "/connections/new")
    no_secret(browser)
    fill(browser, "name", name)
    fill(browser, "model", "judge-model")
    fill(browser, "base_url", base_url)
    fill(browser, "api_key_env", key_env)
    with new_page(browser):  # the list, loaded completely: no_secret reads all of it
        browser.find_element(By.ID, "save-connection").click()
    element(browser, "#connections tr[data-connection-id] a[href$='/edit']")


def row(browser: webdriver.Chrome, name: str) -> webdriver.remote.webelement.WebElement:
    (found,) = [r for r in browser.find_elements(By.CSS_SELECTOR, "#connections tr[data-connection-id]")
                if r.find_element(By.TAG_NAME, "a").text == name]  # fmt: skip
    return found


def test_connection_form_key_status_and_test_never_show_the_key(
    svc: ServiceProcess, llm: FakeLLMServer, browser: webdriver.Chrome
) -> None:
    create(browser, svc, "judge", llm.openai_base_url, KEY_ENV)
    judge = row(browser, "judge")
    conn_id = judge.get_attribute("data-connection-id")
    assert KEY_ENV in judge.text and "set" in judge.find_element(By.CSS_SELECTOR, ".key-status").text
    no_secret(browser)
    judge.find_element(By.XPATH, ".//button[text()='Test']").click()
    answer = element(browser, ".test-answer")
    assert (
        "judge answered: score 0.0, “The output is empty.” (judge-model" in answer.text
    )  # the fake's answer
    no_secret(browser)
    browser.save_screenshot("/tmp/uirules-connections.png")

    create(browser, svc, "nokey", llm.openai_base_url, "UIRULES_UNSET_KEY")
    nokey = row(browser, "nokey")
    assert "not set" in nokey.find_element(By.CSS_SELECTOR, ".key-status").text
    nokey.find_element(By.XPATH, ".//button[text()='Test']").click()
    assert "UIRULES_UNSET_KEY is not set" in element(browser, ".test-error").text

    browser.get(svc.api + f"/connections/{conn_id}/edit")
    no_secret(browser)
    assert browser.find_element(By.NAME, "api_key_env").get_attribute("value") == KEY_ENV
    status, doc = call(svc, "GET", f"/api/v1/connections/{conn_id}")
    assert status == 200 and doc["key_status"] == "set" and SECRET not in str(doc)


def test_wrong_key_error_is_shown_without_the_key(
    svc: ServiceProcess, llm: FakeLLMServer, browser: webdriver.Chrome
) -> None:
    status, _ = call(svc, "POST", "/api/v1/connections", {
        "name": "wrong", "provider": "openai", "protocol": "chat_completions", "base_url": llm.openai_base_url,
        "api_key_env": "PATH", "model": "judge-model", "max_retries": 0, "timeout_s": 5,
    })  # fmt: skip
    assert status == 201
    browser.get(svc.api + "/connections")
    row(browser, "wrong").find_element(By.XPATH, ".//button[text()='Test']").click()
    error = element(browser, ".test-error")
    assert error.text.startswith("wrong: JudgeAuthError"), error.text
    no_secret(browser)


def test_judge_scorer_picks_a_connection_in_the_rule_form(
    svc: ServiceProcess, browser: webdriver.Chrome
) -> None:
    browser.get(svc.api + "/rules/new")
    Select(browser.find_element(By.NAME, "scorer-0-type")).select_by_value("llm_judge")
    assert not browser.find_element(By.NAME, "scorer-0-function").is_displayed()
    fill(browser, "name", "judged")
    fill(browser, "project", "uiconn")
    fill(browser, "scorer-0-name", "helpful")
    Select(browser.find_element(By.NAME, "scorer-0-connection")).select_by_visible_text("judge")
    fill(browser, "scorer-0-criteria", "Is the answer helpful?")
    fill(browser, "scorer-0-threshold", "0.5")
    element(browser, "#check-ok")
    with new_page(browser):  # the rule page, loaded completely: no_secret reads all of it
        browser.find_element(By.ID, "save-rule").click()
    element(browser, "#processing-status")
    (rule,) = [
        r for r in call(svc, "GET", "/api/v1/rules?project=uiconn")[1]["rules"] if r["name"] == "judged"
    ]
    scorer = rule["scorers"][0]
    assert {k: scorer[k] for k in ("type", "name", "connection", "criteria", "threshold")} == {
        "type": "llm_judge", "name": "helpful", "connection": "judge", "criteria": "Is the answer helpful?",
        "threshold": 0.5,
    }  # fmt: skip
    no_secret(browser)


def test_a_running_job_is_cancelled_from_the_rule_page(
    svc: ServiceProcess, llm: FakeLLMServer, browser: webdriver.Chrome
) -> None:
    llm.set_latency(1.0)  # each page of 4 traces waits on its judge calls: the job runs for many seconds
    judge = {"type": "llm_judge", "name": "helpful", "connection": "judge", "criteria": "Is it helpful?"}
    rule = make_rule(svc, scorers=[judge])
    browser.get(svc.api + f"/rules/{rule['id']}")
    browser.find_element(By.ID, "backfill").click()

    def cancel() -> bool:  # the list is swapped every second while the job runs: find the button afresh
        try:
            running = browser.find_element(By.CSS_SELECTOR, "#jobs .job[data-state=running]")
            assert "/s" in running.text and "traces" in running.text  # rate, progress
            running.find_element(By.CSS_SELECTOR, "button.cancel-job").click()
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return True

    eventually(cancel, timeout=30)

    def cancelled() -> tuple[str, str | None]:
        """The cancelled job's text and whether the list that shows it still polls, read from that one list:
        polling and the Cancel click's refresh both swap the list, so a stale read is read again."""
        try:
            jobs = browser.find_element(By.ID, "jobs")
            job = jobs.find_element(By.CSS_SELECTOR, ".job[data-state=cancelled]")
            return job.text, jobs.get_attribute("hx-trigger")
        except (NoSuchElementException, StaleElementReferenceException) as exc:
            raise AssertionError(f"no cancelled job shown yet ({type(exc).__name__})") from exc

    text, polling = eventually(cancelled, timeout=60)
    assert "Cancel" not in text
    assert polling is None
    llm.set_latency(0.0)


def test_delete_asks_first_and_refuses_a_connection_rules_use(
    svc: ServiceProcess, browser: webdriver.Chrome
) -> None:
    conns = {c["name"]: c["id"] for c in call(svc, "GET", "/api/v1/connections")[1]["connections"]}
    browser.get(svc.api + "/connections")
    with new_page(browser):  # loaded completely: the absent confirm button is not merely still unparsed
        row(browser, "judge").find_element(By.LINK_TEXT, "Delete…").click()
    blocked = element(browser, "[role=alert]").text
    assert blocked.startswith("Rules use it: ") and "judged" in blocked  # the judge scorer saved above
    assert not browser.find_elements(By.ID, "confirm-delete")
    browser.get(svc.api + f"/connections/{conns['nokey']}/delete")
    browser.find_element(By.ID, "confirm-delete").click()
    eventually(lambda: browser.current_url.endswith("/connections"))
    names = [c["name"] for c in call(svc, "GET", "/api/v1/connections")[1]["connections"]]
    assert "nokey" not in names and "judge" in names
