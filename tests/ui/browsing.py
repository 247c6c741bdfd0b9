"""`new_page`: wait for the page a click, a submit or a keypress loads, the one way UI tests follow a navigation.

A click returns as soon as the browser has dispatched it, not when the page it asks for has loaded: on a loaded CI
machine the next read would see the old page (or a new one still being parsed, where a `find_elements(...) == []`
passes vacuously). So the old page must be gone (its `html` element stale) and the new one completely loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

TIMEOUT = 30.0  # generous on purpose, as in tests/waiting.py: a page that loads returns at once


@contextmanager
def new_page(browser: webdriver.Chrome, timeout: float = TIMEOUT) -> Iterator[None]:
    """Run the block (which must navigate), then wait until the old page is gone and the new one has loaded."""
    old = browser.find_element(By.TAG_NAME, "html")
    yield
    wait = WebDriverWait(browser, timeout)
    wait.until(expected_conditions.staleness_of(old), "the page did not change")
    wait.until(
        lambda b: b.execute_script("return document.readyState") == "complete",
        "the new page did not finish loading",
    )
