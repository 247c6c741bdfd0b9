"""The trace view in a real browser: the waterfall with every span, span details (chat messages, folded text,
attributes, events), judge spans of an LLM rule under the span they judged with the score's rationale and model,
Add annotation, Open as SQL; and on the traces list, Score selected with a rule, followed to the job. And
keyboard and screen (issue 12, item 9) over every page of the UI: each input, select and textarea has a label,
each link, button and summary an accessible name, the skip link comes first, times show UTC on hover, nothing
scrolls the page sideways on a 400 px window (tables scroll in their own box); the trace view worked with the
keyboard alone (Tab from the top reaches the waterfall, Enter opens a span)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.builders import otlp_request, otlp_span
from tests.fakes.llm_server import FakeLLMServer
from tests.integration.service import ServiceProcess, http
from tests.integration.test_jobs import JS, PROJECT, call, finished, make_rule, send, trace_ids
from tests.integration.test_jobs_judges import JOB_ENV, SINCE, connect, judge_rule
from tests.ui.browsing import new_page
from tests.waiting import eventually

RICH = "ab" * 16
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The capital of France?"}]
LONG = "Paris is the capital. " * 60
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


def send_rich(svc: ServiceProcess, start: int) -> None:
    """A trace with chat messages in, a long text out, a failed tool span with an event, and JSON output."""
    root = otlp_span(trace_id=RICH, span_id="a" * 16, name="chat", start_ns=start, duration_ns=9_000_000,
                     attributes={"input.value": json.dumps(MESSAGES), "output.value": LONG})  # fmt: skip
    tool = otlp_span(trace_id=RICH, span_id="b" * 16, parent_span_id="a" * 16, name="search", start_ns=start
                     + 1_000_000, duration_ns=3_000_000, attributes={"input.value": "france", "k": "v"})  # fmt: skip
    tool["status"] = {"code": 2, "message": "index down"}
    tool["events"] = [{"timeUnixNano": str(start + 2_000_000), "name": "retry", "attributes": []}]
    parse = otlp_span(trace_id=RICH, span_id="c" * 16, parent_span_id="a" * 16, name="parse",
                      start_ns=start + 5_000_000, attributes={"output.value": '{"city": "Paris", "n": [1, 2]}'})  # fmt: skip
    body = otlp_request(
        root, tool, parse, resource={"service.name": "ui-test", "tracejudge.project": PROJECT}
    )
    assert http("POST", svc.otlp_http + "/v1/traces", json.dumps(body).encode(), JS)[0] == 200


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with FakeLLMServer() as llm:
        service = ServiceProcess(tmp_path_factory.mktemp("ui-trace") / "data", env=JOB_ENV).start()
        base = time.time_ns() - 600 * 10**9
        send(service, base)
        send_rich(service, base - 10**9)
        service.wait_for("SELECT count() FROM otel_traces", 2 * len(trace_ids()) + 3)
        connect(service, llm)
        rule = judge_rule(service)
        status, started = call(service, "POST", f"/api/v1/rules/{rule['id']}/rewind", SINCE)
        assert status == 202, started
        assert finished(service, started["job_id"])["state"] == "succeeded"
        service.wait_for("SELECT count() > 0 FROM otel_traces WHERE ScopeName = 'tracejudge.judge'", 1)
        yield service
        assert service.stop() == 0, service.output


def rows(browser: webdriver.Chrome) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row")


def panel(browser: webdriver.Chrome, span_id: str) -> WebElement:
    return browser.find_element(By.ID, f"detail-{span_id}")


def test_waterfall_shows_every_span_and_their_details(svc: ServiceProcess, browser: webdriver.Chrome) -> None:
    browser.get(f"{svc.api}/traces/{RICH}")
    assert browser.title.startswith("Trace abababab")
    found = rows(browser)
    assert [r.get_attribute("data-span-id") for r in found] == ["a" * 16, "b" * 16, "c" * 16]
    assert [r.get_attribute("data-depth") for r in found] == ["0", "1", "1"]
    assert "error" in (found[1].get_attribute("class") or "")
    bars = [r.find_element(By.CLASS_NAME, "wf-bar").get_attribute("style") or "" for r in found]
    assert "left: 0%" in bars[0] and "width: 100%" in bars[0] and "left: 11.1" in bars[1]
    root = panel(browser, "a" * 16)
    assert root.is_displayed() and not panel(browser, "b" * 16).is_displayed()
    roles = [m.text.lower() for m in root.find_elements(By.CSS_SELECTOR, ".message .role")]
    assert roles == ["system", "user"]
    assert "The capital of France?" in root.text
    folded = root.find_element(By.CSS_SELECTOR, ".io details")
    assert folded.get_attribute("open") is None and "1320 characters" in folded.text
    browser.save_screenshot("/tmp/uitrace-rich.png")

    button = found[1].find_element(By.TAG_NAME, "button")
    button.send_keys(Keys.ENTER)  # keyboard: Enter on the span's button
    tool = panel(browser, "b" * 16)
    assert tool.is_displayed() and not root.is_displayed()
    assert button.get_attribute("aria-expanded") == "true"
    assert "index down" in tool.text and "retry" in tool.text and "ui-test" in tool.text
    button.send_keys(Keys.ARROW_DOWN)  # to the next span
    assert browser.switch_to.active_element == found[2].find_element(By.TAG_NAME, "button")
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    parsed = panel(browser, "c" * 16).find_element(By.CSS_SELECTOR, "pre.json").text
    assert json.loads(parsed) == {"city": "Paris", "n": [1, 2]} and "\n" in parsed  # pretty-printed


def test_the_trace_view_fits_a_narrow_window(svc: ServiceProcess, browser: webdriver.Chrome) -> None:
    browser.set_window_size(600, 900)
    try:
        browser.get(f"{svc.api}/traces/{RICH}")
        assert all(r.is_displayed() for r in rows(browser))
        wide = browser.execute_script("return document.documentElement.scrollWidth > window.innerWidth;")
        browser.save_screenshot("/tmp/uitrace-narrow.png")
        assert wide is False
    finally:
        browser.set_window_size(1280, 800)


def test_judge_span_sits_under_the_judged_span_with_rationale_and_model(
    svc: ServiceProcess, browser: webdriver.Chrome
) -> None:
    tid = trace_ids()[1]  # asks for a capital: its llm span was judged
    [[score_id, comment, model, span_id]] = svc.sql(
        f"SELECT ScoreId, Comment, Model, SpanId FROM scores FINAL WHERE TraceId = '{tid}' AND Model != ''"
    )
    assert comment and model
    browser.get(f"{svc.api}/traces/{tid}")
    found = rows(browser)
    names = [r.find_element(By.CLASS_NAME, "wf-name").text.split("\n")[0] for r in found]
    assert len(found) == 3 and names[0] == "agent" and names[1].startswith("llm")
    judged, judge = found[1], found[2]
    assert judged.get_attribute("data-span-id") == span_id
    assert "judge" in (judge.get_attribute("class") or "")
    assert int(judge.get_attribute("data-depth") or 0) == int(judged.get_attribute("data-depth") or 0) + 1
    judged.click()
    scores = panel(browser, span_id).find_element(By.CSS_SELECTOR, f"tr[data-score-id='{score_id}']")
    assert comment[:40] in scores.text and model in scores.text and "EVAL" in scores.text
    judge.find_element(By.TAG_NAME, "button").click()
    judge_panel = panel(browser, judge.get_attribute("data-span-id") or "")
    written = judge_panel.find_element(By.CSS_SELECTOR, f"tr[data-score-id='{score_id}']")
    assert comment[:40] in written.text and model in written.text
    browser.save_screenshot("/tmp/uitrace-judge.png")


def test_add_annotation_stores_an_annotation_score(svc: ServiceProcess, browser: webdriver.Chrome) -> None:
    browser.get(f"{svc.api}/traces/{RICH}")
    form = browser.find_element(By.ID, "annotate")
    form.find_element(By.NAME, "name").send_keys("human-helpful")
    form.find_element(By.NAME, "value").send_keys("0.75")
    form.find_element(By.NAME, "comment").send_keys("clear and short")
    with new_page(browser):  # the form posts, the answer redirects to the trace page with the score added
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    added = browser.find_element(By.CSS_SELECTOR, "#scores tr.added")
    assert "human-helpful" in added.text and "clear and short" in added.text and "ANNOTATION" in added.text
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot("/tmp/uitrace-annotated.png")
    stored = svc.sql(
        f"SELECT Name, Value, Comment, SpanId FROM scores FINAL WHERE TraceId = '{RICH}' AND Source = 'ANNOTATION'"
    )
    assert stored == [["human-helpful", 0.75, "clear and short", ""]]

    select = Select(browser.find_element(By.CSS_SELECTOR, "#annotate select[name=span_id]"))
    select.select_by_value("b" * 16)
    browser.find_element(By.CSS_SELECTOR, "#annotate input[name=name]").send_keys("tool-ok")
    browser.find_element(By.CSS_SELECTOR, "#annotate input[name=value]").send_keys("false")
    with new_page(browser):  # loaded: trace.js has opened the annotated span's details (the URL's #span-…)
        browser.find_element(By.CSS_SELECTOR, "#annotate button[type=submit]").click()
    on_span = browser.find_elements(By.CSS_SELECTOR, f"#detail-{'b' * 16} tr.added")  # in the span's details
    assert on_span and on_span[0].is_displayed() and "tool-ok" in on_span[0].text
    assert svc.sql(
        f"SELECT Passed, SpanId FROM scores FINAL WHERE Name = 'tool-ok' AND TraceId = '{RICH}'"
    ) == [[False, "b" * 16]]


def test_a_refused_annotation_shows_why(svc: ServiceProcess) -> None:
    form = b"name=&value=1&comment=&span_id="
    status, _, page = http("POST", f"{svc.api}/traces/{RICH}/annotations", form,
                           {"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert status == 400 and b'role="alert"' in page and b"name" in page
    status, _, page = http("GET", f"{svc.api}/traces/{'0' * 32}")
    assert status == 404 and b"Trace not found" in page


def test_open_as_sql_lists_the_spans(svc: ServiceProcess, browser: webdriver.Chrome) -> None:
    browser.get(f"{svc.api}/traces/{RICH}")
    with new_page(browser):
        browser.find_element(By.LINK_TEXT, "Open as SQL").click()
    assert RICH in (browser.find_element(By.ID, "query").get_attribute("value") or "")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#sql-results tbody tr")) == 3


def test_score_selected_traces_and_follow_the_job(svc: ServiceProcess, browser: webdriver.Chrome) -> None:
    rule = make_rule(svc)
    browser.get(f"{svc.api}/traces?project={PROJECT}&text=weather")
    picks = browser.find_elements(By.CSS_SELECTOR, "#traces tbody input[name=trace_id]")
    chosen = [p.get_attribute("value") for p in picks[:2]]
    for pick in picks[:2]:
        pick.click()
    assert browser.find_element(By.ID, "score-count").text == "2 selected"
    rules = browser.find_element(By.ID, "score-rule")
    eventually(lambda: rules.find_elements(By.CSS_SELECTOR, f"option[value='{rule['id']}']"))
    Select(rules).select_by_value(rule["id"])
    browser.find_element(By.CSS_SELECTOR, "#score-selected button[type=submit]").click()
    state = "var a = document.getElementById('score-job'); return a && a.getAttribute('data-state');"
    eventually(lambda: browser.execute_script(state), until=lambda s: s == "succeeded", timeout=60)
    assert "2/2 traces" in browser.find_element(By.ID, "score-status").text
    browser.save_screenshot("/tmp/uitrace-selected.png")
    with new_page(browser):  # the link opens the job's JSON
        browser.find_element(By.ID, "score-job").click()
    job = json.loads(browser.find_element(By.TAG_NAME, "body").text)
    assert job["state"] == "succeeded" and job["kind"] == "score_traces" and job["rule_id"] == rule["id"]
    scored = svc.sql(
        f"SELECT DISTINCT TraceId FROM scores FINAL WHERE RuleId = '{rule['id']}' ORDER BY TraceId"
    )
    assert sorted(chosen) == [r[0] for r in scored]


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
