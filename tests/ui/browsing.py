"""`new_page`: wait for the page a click, a submit or a keypress loads, the one way UI tests follow a navigation.

A click returns as soon as the browser has dispatched it, not when the page it asks for has loaded: on a loaded CI
machine the next read would see the old page (or a new one still being parsed, where a `find_elements(...) == []`
passes vacuously). So the old page must be gone (its `html` element stale) and the new one completely loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

TIMEOUT = 30.0  # generous on purpose, as in tests/waiting.py: a page that loads returns at once


@contextmanager
def new_page(browser: webdriver.Chrome, timeout: float = TIMEOUT) -> Iterator[None]:
    """Run the block (which must navigate), then wait until the old page is gone and the new one has loaded."""
    old = browser.find_element(By.TAG_NAME, "html")
    yield
    wait = WebDriverWait(browser, timeout)
    wait.until(lambda _: _gone(old), "the page did not change")
    wait.until(
        lambda b: b.execute_script("return document.readyState") == "complete",
        "the new page did not finish loading",
    )


def _gone(old: WebElement) -> bool:
    """Whether `old` left the document. Mid-navigation chromedriver may answer a look-up of it with "Node with
    given id does not belong to the document" instead of a stale element: that too means the old page is gone."""
    try:
        old.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False
