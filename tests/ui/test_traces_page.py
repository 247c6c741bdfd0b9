"""The traces page in a real browser: the list with score chips, filters, paging, local times."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.integration.service import ServiceProcess
from tests.integration.test_jobs import N_TRACES, call, finished, make_rule, send
from tests.ui.browsing import new_page

ENV = {"TRACEJUDGE_JOBS__SETTLE_S": "0.2", "TRACEJUDGE_JOBS__POLL_S": "0.2"}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    service = ServiceProcess(tmp_path_factory.mktemp("ui") / "data", env=ENV).start()
    send(service, time.time_ns() - 600 * 10**9)
    service.wait_for("SELECT count() FROM otel_traces", 2 * N_TRACES)
    rule = make_rule(service)
    status, started = call(
        service, "POST", f"/api/v1/rules/{rule['id']}/rewind", {"since": "2000-01-01T00:00:00Z"}
    )
    assert status == 202, started
    assert finished(service, started["job_id"])["state"] == "succeeded"
    yield service
    assert service.stop() == 0, service.output


def rows(browser: webdriver.Chrome) -> list[str]:
    return [
        r.get_attribute("data-trace-id") or ""
        for r in browser.find_elements(By.CSS_SELECTOR, "#traces tbody tr[data-trace-id]")
    ]


def test_traces_list_pages_and_shows_score_chips(svc: ServiceProcess, browser: webdriver.Chrome) -> None:
    browser.get(svc.api + "/")
    assert browser.current_url.endswith("/traces") and browser.title.startswith("Traces")
    first = rows(browser)
    assert len(first) == 50
    chips = browser.find_elements(By.CSS_SELECTOR, "#traces .chip.pass")
    assert chips and "paris" in chips[0].text
    stamp = browser.find_element(By.CSS_SELECTOR, "#traces time")
    assert stamp.get_attribute("title").endswith("(UTC)") and stamp.text  # shown in the browser's zone
    with new_page(browser):
        browser.find_element(By.LINK_TEXT, "Older traces").click()
    second = rows(browser)
    assert len(second) == N_TRACES - 50 and not set(first) & set(second)


def test_filters_by_text_and_score(svc: ServiceProcess, browser: webdriver.Chrome) -> None:
    browser.get(svc.api + "/traces?text=WEATHER")
    weather = rows(browser)
    assert len(weather) == N_TRACES // 3
    for wildcard in ("%25", "_", "%5C"):  # LIKE's wildcards and escape are searched as text: no span has them
        browser.get(svc.api + f"/traces?text={wildcard}")
        assert rows(browser) == [], wildcard
    browser.get(svc.api + "/traces?score_name=paris&score_op=passed")
    assert len(rows(browser)) == 50  # the 60 traces that ask for a capital, first page
    browser.get(svc.api + "/traces?score_name=paris&score_op=%3E&score_value=abc")
    assert "score value must be a number" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert json.loads(json.dumps(rows(browser))) == []
