"""The SQL page in a real browser: a read-only query's rows (a cut shown as such), a write query refused with the
server's message, the tables' columns beside the box, example queries that fill it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.integration.service import ServiceProcess
from tests.integration.test_jobs import N_TRACES, PROJECT, call, send
from tests.ui.browsing import new_page

MAX_ROWS = 25


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # a posted score is stored within 60 s unless a read asks for it sooner (the SQL page does)
    env = {"TRACEJUDGE_API__SQL_MAX_ROWS": str(MAX_ROWS), "TRACEJUDGE_SCORES_LOG__SEGMENT_MAX_AGE_S": "60"}
    service = ServiceProcess(tmp_path_factory.mktemp("ui-sql") / "data", env=env).start()
    send(service, time.time_ns() - 600 * 10**9)
    service.wait_for("SELECT count() FROM otel_traces", 2 * N_TRACES)
    yield service
    assert service.stop() == 0, service.output


def run(browser: webdriver.Chrome, query: str) -> None:
    """Submit the query and wait for the page it loads (the form is a plain GET)."""
    box = browser.find_element(By.ID, "query")
    box.clear()
    box.send_keys(query)
    with new_page(browser):
        browser.find_element(By.CSS_SELECTOR, "#sql-form button[type=submit]").click()


def cells(browser: webdriver.Chrome) -> list[list[str]]:
    return [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in browser.find_elements(By.CSS_SELECTOR, "#sql-results tbody tr")
    ]


def test_a_query_renders_its_rows_and_a_cut(svc: ServiceProcess, browser: webdriver.Chrome) -> None:
    browser.get(svc.api + "/sql")
    assert browser.title.startswith("SQL")
    run(browser, "SELECT SpanName, count() AS n FROM otel_traces GROUP BY SpanName ORDER BY SpanName")
    headers = [th.text.split()[0] for th in browser.find_elements(By.CSS_SELECTOR, "#sql-results thead th")]
    assert headers == ["SpanName", "n"]
    assert cells(browser) == [["agent", str(N_TRACES)], ["llm", str(N_TRACES)]]
    assert "2 rows" in browser.find_element(By.ID, "sql-status").text
    run(browser, f"SELECT TraceId FROM otel_traces WHERE Project = '{PROJECT}'")
    assert len(cells(browser)) == MAX_ROWS
    assert "truncated" in browser.find_element(By.ID, "sql-status").text
    browser.save_screenshot("/tmp/uitrace-sql.png")


def test_a_write_query_is_refused_with_the_servers_message(
    svc: ServiceProcess, browser: webdriver.Chrome
) -> None:
    write = "INSERT INTO rules (Id) VALUES ('x')"
    status, doc = call(svc, "POST", "/api/v1/sql", {"query": write})
    assert status == 400
    browser.get(f"{svc.api}/sql?query={quote(write)}")
    alert = browser.find_element(By.ID, "sql-error")
    assert alert.text == doc["error"]["message"] and "readonly" in alert.text.lower()
    assert browser.find_elements(By.ID, "sql-results") == []
    assert svc.scalar("SELECT count() FROM rules") == 0


def test_columns_beside_the_box_and_examples_fill_it(svc: ServiceProcess, browser: webdriver.Chrome) -> None:
    browser.get(svc.api + "/sql")
    tables = [s.text for s in browser.find_elements(By.CSS_SELECTOR, ".sql-tables summary")]
    assert tables == ["otel_traces", "scores", "rules", "jobs"]
    columns = browser.find_element(By.CSS_SELECTOR, ".sql-tables details[open]").text
    assert "TraceId" in columns and "SpanAttributes" in columns
    examples = browser.find_elements(By.CSS_SELECTOR, ".examples a")
    assert [a.text for a in examples] == [
        "Pass rate by rule per day",
        "Slowest traces",
        "Judge cost per model",
    ]
    for i in range(len(examples)):
        example = browser.find_elements(By.CSS_SELECTOR, ".examples a")[i]
        before = browser.current_url
        example.click()  # fills the box; does not run it
        query = browser.find_element(By.ID, "query").get_attribute("value") or ""
        assert query == example.get_attribute("data-query") and browser.current_url == before
        with new_page(browser):  # loaded completely: `errors == []` is not read from a page still parsing
            browser.find_element(By.CSS_SELECTOR, "#sql-form button[type=submit]").click()
        errors = browser.find_elements(By.ID, "sql-error")
        assert errors == [], errors[0].text
        assert browser.find_elements(By.ID, "sql-results")
    assert len(cells(browser)) == 1  # judge cost per model: no judge ran, "No rows."


def test_a_score_just_posted_is_seen(svc: ServiceProcess, browser: webdriver.Chrome) -> None:
    score_id = f"sql-page-{time.time_ns()}"
    status, doc = call(svc, "POST", "/api/v1/scores", {"score_id": score_id, "name": "fresh", "value": 1,
                                                       "trace_id": "f" * 32, "project": PROJECT})  # fmt: skip
    assert status == 201, doc
    browser.get(svc.api + "/sql")
    run(browser, f"SELECT Name, Value FROM scores FINAL WHERE ScoreId = '{score_id}'")
    assert cells(browser) == [["fresh", "1.0"]]
