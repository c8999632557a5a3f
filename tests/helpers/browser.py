"""A real browser for tests: Debian's headless Chromium driven by Selenium through Debian's
chromium-driver, never anything Selenium Manager would download (the machine may be offline).

    with chromium() as driver:
        driver.get(url)
        wait_for(driver, lambda d: d.find_element(By.ID, "x"), what="the x element")
        screenshot(driver, tmp_path, "x")

A test without Chromium skips naming the packages; in CI (which installs them) it fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypeVar

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from packages import missing_package

PACKAGES = "chromium chromium-driver"
WINDOW = (1400, 1000)
T = TypeVar("T")


def _first(names: tuple[str, ...], paths: tuple[str, ...]) -> str | None:
    """The first of ``names`` on PATH, else the first executable of ``paths``."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return next((p for p in paths if os.access(p, os.X_OK)), None)


def chromium_binaries() -> tuple[str, str] | None:
    """(chromium, chromedriver), or None when either is missing."""
    browser = _first(("chromium", "chromium-browser"), ("/usr/bin/chromium",))
    driver = _first(("chromedriver",), ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"))
    return (browser, driver) if browser and driver else None


def require_chromium() -> tuple[str, str]:
    """(chromium, chromedriver), else the test skips naming the packages (CI installs them:
    there it fails)."""
    found = chromium_binaries()
    if found is None:
        missing_package("Chromium and its driver", PACKAGES)
    return found


def chromium_options(
    binary: str, width: int = WINDOW[0], height: int = WINDOW[1]
) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespaces for the sandbox
        "--disable-dev-shm-usage",  # a container's /dev/shm is often 64 MB
        f"--window-size={width},{height}",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",  # screenshots of the page, not of a scrollbar
    ):
        options.add_argument(arg)
    return options


@contextmanager
def chromium(width: int = WINDOW[0], height: int = WINDOW[1]) -> Iterator[WebDriver]:
    """A headless Chromium, quit on leaving whatever happened (the test skips if there is
    none)."""
    binary, chromedriver = require_chromium()
    driver = webdriver.Chrome(
        options=chromium_options(binary, width, height),
        service=Service(executable_path=chromedriver),  # given: Selenium Manager never runs
    )
    try:
        driver.set_page_load_timeout(30)
        fit_viewport(driver, width, height)
        yield driver
    finally:
        driver.quit()


def fit_viewport(driver: WebDriver, width: int, height: int) -> None:
    """Sizes the window so that the page itself (and so every screenshot) is width x height:
    --window-size counts the browser's own (invisible, in headless mode) top bar too."""
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    outer = driver.get_window_size()
    driver.set_window_size(
        outer["width"] + width - int(inner[0]), outer["height"] + height - int(inner[1])
    )


def wait_for(
    driver: WebDriver, condition: Callable[[WebDriver], Literal[False] | T], timeout: float = 10.0,
    what: str = "",
) -> T:  # fmt: skip
    """Polls ``condition`` until it is truthy and returns that value; fails the test after
    ``timeout`` seconds naming ``what``, the page's address and the start of its text."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)
    except TimeoutException:
        text = driver.execute_script("return document.body ? document.body.innerText : ''")
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what or condition} "
            f"at {driver.current_url}; the page says:\n{str(text)[:1500]}"
        ) from None


def click(driver: WebDriver, by: str, value: str, timeout: float = 10.0, what: str = "") -> None:
    """Clicks the element found by (``by``, ``value``) once it is there. A page's live update may
    replace it between the find and the click: then it is found again (a click on a replaced
    element fails before anything is clicked, so nothing is clicked twice)."""

    def clicked(d: WebDriver) -> bool:
        try:
            d.find_element(by, value).click()
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return True

    wait_for(driver, clicked, timeout, what or f"{value} to click")


def response_status(driver: WebDriver) -> int:
    """The HTTP status of the response the page shown was loaded from (the last one of a chain
    of redirects), as the browser's Navigation Timing records it."""
    status = driver.execute_script(
        "const e = performance.getEntriesByType('navigation');"
        "return e.length ? e[0].responseStatus : null;"
    )
    assert isinstance(status, int), f"no navigation status for {driver.current_url}: {status!r}"
    return status


def screenshot(driver: WebDriver, directory: Path, name: str) -> Path:
    """Saves what the window shows as ``directory``/``name``.png and returns the path."""
    path = directory / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot saved at {path}"
    assert path.stat().st_size > 0
    return path
