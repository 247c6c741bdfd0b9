"""The rules pages in a real browser: the form (validation as you type, a filter error at its position, Test
rule, save), the rule page (Score past traces, Rewind... with its dry run, the job followed to done, charts),
enable/disable and delete with a confirmation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from connectors.ui.rules_pages import duration
from tests.builders import otlp_request, otlp_span
from tests.integration.service import ServiceProcess, http
from tests.integration.test_jobs import JS, N_TRACES, PROJECT, call, capital, make_rule, send, trace_ids
from tests.integration.test_rules_e2e import FAST_WINDOWS
from tests.ui.browsing import new_page
from tests.waiting import eventually

ENV = {**FAST_WINDOWS, "TRACEJUDGE_JOBS__SETTLE_S": "0.2", "TRACEJUDGE_JOBS__POLL_S": "0.2"}
FORM = "application/x-www-form-urlencoded"
LIVE = 6  # traces sent after the rules exist, scored live
CAPITAL_TRACES = sum(capital(i) for i in range(N_TRACES))


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    service = ServiceProcess(tmp_path_factory.mktemp("uirules") / "data", env=ENV).start()
    send(service, time.time_ns() - 600 * 10**9)
    service.wait_for("SELECT count() FROM otel_traces", 2 * N_TRACES)
    yield service
    assert service.stop() == 0, service.output


def element(browser: webdriver.Chrome, css: str, timeout: float = 20) -> WebElement:
    return eventually(lambda: browser.find_elements(By.CSS_SELECTOR, css), timeout=timeout)[0]


def fill(browser: webdriver.Chrome, name: str, text: str) -> None:
    field = browser.find_element(By.NAME, name)
    field.clear()
    field.send_keys(text)


def rule_named(svc: ServiceProcess, name: str) -> list[dict[str, object]]:
    return [r for r in call(svc, "GET", f"/api/v1/rules?project={PROJECT}")[1]["rules"] if r["name"] == name]


def test_rule_form_validates_as_you_type_tests_and_saves(
    svc: ServiceProcess, browser: webdriver.Chrome
) -> None:
    browser.get(svc.api + "/rules/new")
    assert browser.title.startswith("New rule")
    fill(browser, "name", "capitals")
    fill(browser, "project", PROJECT)
    fill(browser, "scorer-0-name", "paris")
    fill(browser, "scorer-0-function", "contains")
    fill(browser, "scorer-0-args", '{"value": "Paris"}')
    bad = "input ILIKE '%capital%' AND nosuch = 1"
    fill(browser, "filter", bad)
    mark = element(browser, "#filter-error-at")
    assert mark.text == "nosuch"
    assert browser.find_element(By.NAME, "filter").get_attribute("aria-invalid") == "true"
    problem = browser.find_element(By.ID, "check-problem").text
    assert f"position {bad.index('nosuch')}" in problem and problem.startswith("filter:")
    fill(browser, "scorer-0-function", "no_such_scorer")
    fill(browser, "filter", "input ILIKE '%capital%'")
    assert "scorers[0]" in element(browser, "#check-problem[data-field^=scorers]").text
    assert browser.find_element(By.NAME, "scorer-0-function").get_attribute("aria-invalid") == "true"
    assert browser.find_element(By.NAME, "filter").get_attribute("aria-invalid") is None
    fill(browser, "scorer-0-function", "contains")
    element(browser, "#check-ok")
    browser.save_screenshot("/tmp/uirules-form.png")

    browser.find_element(By.ID, "test-rule").click()
    summary = element(browser, "#test-summary")
    assert browser.find_element(By.TAG_NAME, "main").text.count("The rule is valid.") == 1  # not again below
    browser.find_element(By.ID, "test-result").screenshot("/tmp/uirules-test.png")
    latest = range(N_TRACES - 20, N_TRACES)  # Test rule looks at the project's 20 latest traces
    assert f"{sum(capital(i) for i in latest)} would be scored" in summary.text
    matched = browser.find_elements(By.CSS_SELECTOR, "#test-traces tr.matched")
    assert len(matched) == sum(capital(i) for i in latest)
    assert all("paris 1" in row.text for row in matched)
    assert rule_named(svc, "capitals") == []  # testing saves nothing

    browser.find_element(By.ID, "save-rule").click()
    eventually(lambda: browser.title.startswith("Rule capitals"))
    (rule,) = rule_named(svc, "capitals")
    assert rule["filter"] == "input ILIKE '%capital%'" and rule["scorers"] == [
        {"type": "code", "name": "paris", "function": "contains", "args": {"value": "Paris"}}
    ]
    assert browser.current_url.endswith(f"/rules/{rule['id']}")


def test_edit_add_a_scorer_and_a_taken_name_is_refused(
    svc: ServiceProcess, browser: webdriver.Chrome
) -> None:
    (rule,) = rule_named(svc, "capitals")  # saved through the form by the first test
    browser.get(svc.api + f"/rules/{rule['id']}/edit")
    assert browser.find_element(By.NAME, "filter").get_attribute("value") == rule["filter"]
    with new_page(browser):  # a submit button: the server renders the form again with one more scorer
        browser.find_element(By.XPATH, "//button[text()='Add another scorer']").click()
    assert (
        len(browser.find_elements(By.CSS_SELECTOR, "fieldset.scorer")) == 3
    )  # paris, the spare row, the added one
    fill(browser, "scorer-1-name", "json")
    fill(browser, "scorer-1-function", "json_valid")
    fill(browser, "sampling_rate", "0.5")
    browser.find_element(By.ID, "save-rule").click()
    element(browser, "#processing-status")
    (edited,) = rule_named(svc, "capitals")
    assert edited["id"] == rule["id"] and edited["version"] == rule["version"] + 1
    assert edited["sampling_rate"] == 0.5 and [s["name"] for s in edited["scorers"]] == ["paris", "json"]
    call(svc, "PATCH", f"/api/v1/rules/{rule['id']}", {"sampling_rate": 1.0, "scorers": rule["scorers"]})

    browser.get(svc.api + "/rules/new")
    fill(browser, "name", "capitals")
    fill(browser, "project", PROJECT)
    fill(browser, "scorer-0-name", "x")
    fill(browser, "scorer-0-function", "json_valid")
    with new_page(browser):  # the refused save renders the form again, its values kept
        browser.find_element(By.ID, "save-rule").click()
    assert "a rule named 'capitals' exists in 'jobs'" in element(browser, "#save-error").text
    assert browser.find_element(By.NAME, "scorer-0-function").get_attribute("value") == "json_valid"  # kept


def test_score_past_traces_then_rewind_with_dry_run_follows_the_job(
    svc: ServiceProcess, browser: webdriver.Chrome
) -> None:
    rule = make_rule(svc)
    browser.get(svc.api + f"/rules/{rule['id']}")
    browser.find_element(By.ID, "backfill").click()
    done = element(browser, "#jobs .job[data-state=succeeded]", timeout=60)
    assert "backfill" in done.text and "50 / 50 traces" in done.text

    browser.find_element(By.CSS_SELECTOR, "#rewind summary").click()
    browser.execute_script("document.getElementById('rewind-since').value = '2000-01-01T00:00:00'")
    browser.find_element(By.ID, "rewind-estimate-button").click()
    dry = element(browser, "#rewind-dry-run")
    assert dry.text.startswith(f"{CAPITAL_TRACES} traces") and "0 judge calls" in dry.text
    assert (
        call(svc, "GET", f"/api/v1/jobs?rule_id={rule['id']}")[1]["count"] == 1
    )  # the dry run starts nothing
    browser.find_element(By.ID, "rewind-confirm").click()
    rewind = element(browser, "#jobs .job[data-state=succeeded] ~ .job[data-state=succeeded]", timeout=60)
    first = browser.find_element(By.CSS_SELECTOR, "#jobs .job")  # newest first: the rewind
    assert "rewind" in first.text and f"{N_TRACES} / {N_TRACES} traces" in first.text, rewind.text
    assert f"{CAPITAL_TRACES} matched · {2 * CAPITAL_TRACES} scores" in first.text
    bar = first.find_element(By.TAG_NAME, "progress")
    assert bar.get_attribute("value") == bar.get_attribute("max") == str(N_TRACES)
    assert browser.find_element(By.ID, "jobs").get_attribute("hx-trigger") is None  # done: polling stopped

    browser.get(svc.api + f"/rules/{rule['id']}?period=7d")
    rows = browser.find_elements(By.CSS_SELECTOR, ".chart-row")
    assert [r.get_attribute("data-scorer") for r in rows] == ["paris", "short"]
    assert f"{CAPITAL_TRACES} scores" in rows[0].text
    assert len(browser.find_elements(By.CSS_SELECTOR, ".chart-row canvas")) == 6  # mean, pass rate, histogram
    browser.find_element(By.ID, "charts").screenshot("/tmp/uirules-charts.png")


def test_enable_disable_and_delete_with_confirmation(svc: ServiceProcess, browser: webdriver.Chrome) -> None:
    rule = make_rule(svc)
    browser.get(svc.api + "/rules")
    toggle = browser.find_element(By.CSS_SELECTOR, f"tr[data-rule-id='{rule['id']}'] button.toggle")
    assert toggle.text == "On"
    with new_page(browser):  # the toggle posts a form; the answer redirects to the list
        toggle.click()
    eventually(lambda: call(svc, "GET", f"/api/v1/rules/{rule['id']}")[1]["enabled"] is False)
    browser.save_screenshot("/tmp/uirules-list.png")
    browser.get(svc.api + f"/rules/{rule['id']}")
    with new_page(browser):
        browser.find_element(By.LINK_TEXT, "Delete…").click()
    assert "cannot be undone" in browser.find_element(By.TAG_NAME, "main").text
    assert call(svc, "GET", f"/api/v1/rules/{rule['id']}")[0] == 200  # asking is not deleting
    browser.find_element(By.ID, "confirm-delete").click()
    eventually(lambda: browser.current_url.endswith("/rules"))
    assert call(svc, "GET", f"/api/v1/rules/{rule['id']}")[0] == 404
    browser.get(svc.api + f"/rules/{rule['id']}")
    assert browser.title.startswith("Not found") and f"rule {rule['id']} not found" in browser.page_source


def send_live(svc: ServiceProcess) -> list[str]:
    ids = [f"{0xA11CE000 + i:032x}" for i in range(LIVE)]
    spans = [otlp_span(trace_id=tid, span_id=f"{0xA11CE000 + i:016x}", name="agent",
                       attributes={"input.value": f"capital of live country {i}?", "output.value": "Paris"})
             for i, tid in enumerate(ids)]  # fmt: skip
    body = otlp_request(*spans, resource={"service.name": "ui-live", "tracejudge.project": PROJECT})
    status, _, raw = http("POST", svc.otlp_http + "/v1/traces", json.dumps(body).encode(), JS)
    assert status == 200, raw
    return ids


def test_traces_sent_after_saving_are_scored_live(svc: ServiceProcess, browser: webdriver.Chrome) -> None:
    (rule,) = rule_named(svc, "capitals")  # saved through the form by the first test
    browser.get(svc.api + f"/rules/{rule['id']}")
    page = browser.find_element(By.TAG_NAME, "html")
    assert browser.find_element(By.ID, "st-scored").text == "0"
    ids = send_live(svc)

    def count(element_id: str) -> str:  # Processing status refreshes itself (a swap every 3 s): no reload
        try:
            return browser.find_element(By.ID, element_id).text
        except StaleElementReferenceException:  # swapped between finding it and reading it
            return ""

    eventually(
        lambda: count("st-scored"), until=lambda n: n == str(LIVE), timeout=60, message=lambda: svc.output
    )
    assert eventually(lambda: count("st-seen")) == str(LIVE)
    assert page.is_enabled()  # the same page (a reload would make it stale)
    assert "no trace yet" not in browser.find_element(By.ID, "processing-status").text
    browser.save_screenshot("/tmp/uirules-rule.png")
    browser.get(svc.api + "/traces?text=live+country")
    rows = browser.find_elements(By.CSS_SELECTOR, "#traces tbody tr[data-trace-id]")
    assert sorted(r.get_attribute("data-trace-id") or "" for r in rows) == ids
    assert all("paris 1" in r.find_element(By.CSS_SELECTOR, ".chip.pass").text for r in rows)


def test_a_multipart_form_is_refused_with_415_not_a_500(svc: ServiceProcess) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\n\xff\xfe\r\n--b--\r\n'
    multipart = {"Content-Type": "multipart/form-data; boundary=b"}
    for path in ("/rules/new", "/rules/check", "/connections/new", f"/traces/{trace_ids()[0]}/annotations"):
        status, _, raw = http("POST", svc.api + path, body, multipart)
        assert status == 415 and b"application/x-www-form-urlencoded" in raw, (path, status, raw[:300])
    status, _, raw = http("POST", svc.api + "/rules/check", b"name=\xff", {"Content-Type": FORM})
    assert status == 400 and b"not UTF-8" in raw, raw[:300]


def test_durations_read_well() -> None:
    assert [duration(s) for s in (0.42, 12, 200, 5400, 3 * 86400)] == [
        "0.4 s",
        "12 s",
        "3.3 min",
        "1.5 h",
        "3 d",
    ]
