"""Keyboard and screen (issue 12, item 9) in a real browser, over every page of the UI: each input, select and
textarea has a label, each link, button and summary an accessible name, the skip link comes first, times show
UTC on hover, nothing scrolls the page sideways on a 400 px window (tables scroll in their own box); and the
trace view worked with the keyboard alone: Tab from the top reaches the waterfall, Enter opens a span.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import ServiceProcess
from tests.integration.test_jobs import call, make_rule
from tests.integration.test_jobs_judges import connect
from tests.ui.test_trace_view import RICH, send_rich

# Each offending element's outline, for the assertion's message. A control's name: its text, aria-label,
# aria-labelledby or title; an input's label: a <label> (wrapping or for=) or aria-label / aria-labelledby.
UNLABELLED = """
return Array.from(document.querySelectorAll("input:not([type=hidden]), select, textarea"))
  .filter(el => el.labels.length === 0 && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby"))
  .map(el => el.outerHTML.slice(0, 160));
"""
NAMELESS = """
return Array.from(document.querySelectorAll("a[href], button, summary"))
  .filter(el => !(el.innerText || el.textContent).trim() && !el.getAttribute("aria-label")
                && !el.getAttribute("aria-labelledby") && !el.getAttribute("title"))
  .map(el => el.outerHTML.slice(0, 160));
"""
WIDER_THAN_WINDOW = "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with FakeLLMServer() as llm:
        service = ServiceProcess(tmp_path_factory.mktemp("ui-keys") / "data").start()
        base = time.time_ns() - 600 * 10**9
        send_rich(service, base)
        service.wait_for("SELECT count() FROM otel_traces", 3)
        connect(service, llm)
        yield service
        assert service.stop() == 0, service.output


def every_page(svc: ServiceProcess) -> list[str]:
    """Every page of the UI (a new rule each time: its page, edit form and delete confirmation)."""
    rule = make_rule(svc)["id"]
    (connection,) = call(svc, "GET", "/api/v1/connections")[1]["connections"]  # made by the fixture
    pages = ["/traces", "/traces?text=nothing+matches", f"/traces/{RICH}", f"/traces/{'0' * 32}", "/rules",
             "/rules/new", f"/rules/{rule}", f"/rules/{rule}/edit", f"/rules/{rule}/delete", "/connections",
             "/connections/new", f"/connections/{connection['id']}/edit", "/sql", "/sql?query=SELECT+1"]  # fmt: skip
    return [svc.api + p for p in pages]


def test_every_page_labels_its_inputs_names_its_controls_and_fits_a_narrow_window(
    svc: ServiceProcess, browser: webdriver.Chrome
) -> None:
    problems: dict[str, object] = {}
    pages = every_page(svc)
    try:
        for width in (1280, 400):
            browser.set_window_size(width, 800)
            for url in pages:
                browser.get(url)
                page = f"{url} at {width} px"
                if unlabelled := browser.execute_script(UNLABELLED):
                    problems[page + ": inputs without a label"] = unlabelled
                if nameless := browser.execute_script(NAMELESS):
                    problems[page + ": controls without a name"] = nameless
                if (wider := browser.execute_script(WIDER_THAN_WINDOW)) > 0:
                    problems[page + ": scrolls sideways by (px)"] = wider
                skip = browser.find_elements(By.CSS_SELECTOR, "a[href], button, input, select, textarea")[0]
                if skip.get_attribute("class") != "skip" or not skip.get_attribute("href").endswith("#main"):
                    problems[page + ": the first control is not the skip link"] = skip.get_attribute(
                        "outerHTML"
                    )
                untitled = [t.text for t in browser.find_elements(By.TAG_NAME, "time")
                            if "(UTC)" not in (t.get_attribute("title") or "")]  # fmt: skip
                if untitled:
                    problems[page + ": times without UTC on hover"] = untitled
    finally:
        browser.set_window_size(1280, 800)
    assert not problems, problems


def focused(browser: webdriver.Chrome) -> dict[str, str]:
    return browser.execute_script(  # type: ignore[no-any-return]
        "var e = document.activeElement; return {tag: e.tagName, id: e.id, cls: e.className,"
        " name: e.getAttribute('name') || '', text: (e.innerText || '').trim().slice(0, 40),"
        " outline: getComputedStyle(e).outlineStyle};"
    )


def test_the_trace_view_works_from_the_keyboard_alone(svc: ServiceProcess, browser: webdriver.Chrome) -> None:
    browser.get(f"{svc.api}/traces/{RICH}")
    keys = ActionChains(browser)
    keys.send_keys(Keys.TAB).perform()
    assert focused(browser)["cls"] == "skip"  # the first Tab: Skip to content, visible when focused
    assert browser.find_element(By.CLASS_NAME, "skip").location["x"] >= 0
    keys.send_keys(Keys.ENTER).perform()
    assert focused(browser)["id"] == "main"
    seen: list[dict[str, str]] = []
    for _ in range(60):  # Tab on until the waterfall's first span
        keys.send_keys(Keys.TAB).perform()
        seen.append(focused(browser))
        if "wf-button" in seen[-1]["cls"]:
            break
    assert "wf-button" in seen[-1]["cls"], seen
    assert all(s["outline"] != "none" for s in seen), seen  # a visible focus on every control
    names = {s["name"] for s in seen} | {s["text"] for s in seen}
    assert {"name", "value", "span_id", "comment", "Add annotation", "Open as SQL"} <= names, seen
    keys.send_keys(Keys.ARROW_DOWN).perform()  # to the second span ...
    keys.send_keys(Keys.ENTER).perform()  # ... and open it
    assert browser.find_element(By.ID, f"detail-{'b' * 16}").is_displayed()
    assert not browser.find_element(By.ID, f"detail-{'a' * 16}").is_displayed()
    assert focused(browser)["cls"] == "wf-button"
