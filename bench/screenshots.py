"""`make screenshots`: a PNG of every page of the web UI, with the demo data, in docs/screenshots/.

Starts `tracejudge run` on free loopback ports with a temporary data directory, loads `tracejudge demo` into
it, and drives Debian's headless Chromium (Selenium and chromium-driver, as tests/ui/conftest.py) over each
page at 1280 pixels wide, the window as tall as the page (up to --max-height). A page the service does not
serve yet (404) is skipped with a note, so this runs whichever pages are built.

    python -m bench.screenshots [--out docs/screenshots] [--tracejudge-cmd "python -m tracejudge"]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from bench.service import REPO_DIR, ManagedServer, http_json, tracejudge_cmd

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
WIDTH = 1280
SLOWEST_TRACES = (
    "SELECT TraceId, max(Duration) / 1e6 AS ms, count() AS spans FROM otel_traces "
    "GROUP BY TraceId ORDER BY ms DESC LIMIT 20"
)
TEST_RULE = {
    "name": "answer-grounded", "project": "demo-rag", "filter": "name = 'rag.query' AND output != ''",
    "scorer-0-name": "cites_source", "scorer-0-function": "regex", "scorer-0-args": '{"pattern": "\\\\[kb-\\\\d{3}\\\\]"}',
}  # fmt: skip
Prepare = Callable[[webdriver.Chrome], None]


def browser() -> webdriver.Chrome:
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WIDTH},800", "--lang=en-US", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def run_test_rule(driver: webdriver.Chrome) -> None:
    """Fill the new-rule form with a code scorer and press Test rule; wait for its answer."""
    for name, value in TEST_RULE.items():
        field = driver.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    driver.find_element(By.ID, "test-rule").click()
    deadline = time.monotonic() + 30
    while not driver.find_elements(By.CSS_SELECTOR, "#test-result table, #test-result .error-box"):
        if time.monotonic() > deadline:
            print("  note: Test rule showed no result in 30 s")
            return
        time.sleep(0.2)


def shoot(driver: webdriver.Chrome, url: str, path: Path, max_height: int, prepare: Prepare | None) -> None:
    driver.set_window_size(WIDTH, 800)
    driver.get(url)
    if prepare is not None:
        prepare(driver)
    time.sleep(0.3)  # htmx swaps and uPlot's first draw
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(WIDTH, min(max(height, 800), max_height))
    driver.save_screenshot(str(path))


def demo_ids(api: str) -> dict[str, str]:
    """A RAG trace with an annotation (the trace view) and the demo's RAG rule (the rule page)."""
    _, doc = http_json("GET", api + "/api/v1/scores?source=ANNOTATION&project=demo-rag&limit=1")
    _, rules = http_json("GET", api + "/api/v1/rules?project=demo-rag")
    return {"trace": doc["scores"][0]["trace_id"], "rule": rules["rules"][0]["id"]}


def pages(ids: dict[str, str]) -> list[tuple[str, str, Prepare | None]]:
    """(file name, path, what to do on the page before the picture)."""
    return [
        ("traces", "/traces", None),
        ("trace", f"/traces/{ids['trace']}", None),
        ("rules", "/rules", None),
        ("rule", f"/rules/{ids['rule']}", None),
        ("rule-new-test", "/rules/new", run_test_rule),
        ("connections", "/connections", None),
        ("sql", "/sql?" + urllib.parse.urlencode({"query": SLOWEST_TRACES}), None),
    ]


def take_all(api: str, out: Path, max_height: int) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    driver = browser()
    try:
        for name, path, prepare in pages(demo_ids(api)):
            status = status_of(api + path)
            if status != 200:
                print(f"  skipped {path}: the service answers {status} (page not built yet?)")
                continue
            try:
                shoot(driver, api + path, out / f"{name}.png", max_height, prepare)
            except WebDriverException as exc:
                print(f"  skipped {path}: {exc.msg}")
                continue
            written.append(name)
            print(f"  wrote {out / f'{name}.png'} ({path})")
    finally:
        driver.quit()
    return written


def run(args: argparse.Namespace) -> int:
    cmd = tracejudge_cmd(args)
    with tempfile.TemporaryDirectory(prefix="tracejudge-screens-") as tmp:
        env = {"TRACEJUDGE_JOBS__SETTLE_S": "0.2", "TRACEJUDGE_JOBS__POLL_S": "0.2"}
        server = ManagedServer(cmd, Path(tmp) / "data", Path(tmp), [], env=env)
        server.start()
        try:
            subprocess.run([*cmd, "demo", "--api-url", server.api], check=True, cwd=REPO_DIR)
            written = take_all(server.api, args.out, args.max_height)
        finally:
            server.stop()
    print(f"{len(written)} screenshot(s) in {args.out}")
    return 0 if written else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=REPO_DIR / "docs" / "screenshots")
    p.add_argument("--max-height", type=int, default=1800, help="tallest picture, pixels (default 1800)")
    p.add_argument("--tracejudge-cmd", help='default: the venv\'s tracejudge, e.g. "python -m tracejudge"')
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
