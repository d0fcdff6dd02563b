"""A real headless Chromium (Debian's chromium and chromedriver) driven by Selenium, for the console.

Every page the tests open goes through ``Browser.visit`` or a click, and ``Browser.errors`` reads the
browser's own log: a JavaScript error, a refused inline script or a failed load shows there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)
# Screenshots are kept here as test artifacts; CONVEYOR_CONSOLE_SCREENSHOTS copies them elsewhere too
# (the README's pictures are taken that way).
SCREENSHOT_COPY = "CONVEYOR_CONSOLE_SCREENSHOTS"


class Browser:
    """One headless Chromium with a fresh profile, and the console's base URL."""

    def __init__(self, base_url: str, *, profile: Path, artifacts: Path) -> None:
        if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
            raise AssertionError(
                "chromium and chromium-driver are missing: run infra/browser.sh (make test does)"
            )
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
        self.base_url = base_url
        self.artifacts = artifacts
        self.seen_errors: list[dict[str, Any]] = []

    def visit(self, path: str) -> None:
        """Open a console page."""
        self.driver.get(f"{self.base_url}{path}")

    def find(self, css: str) -> WebElement:
        """The first element matching ``css``."""
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        """Every element matching ``css``."""
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def script(self, source: str) -> Any:
        """Run ``source`` in the page (a test's look inside it, not the console's code)."""
        return self.driver.execute_script(source)

    def submit(self, css: str, *, timeout: float = 60.0) -> None:
        """Click a form's button and wait until the page it leads to has replaced this one."""
        # The page may be swapping a live part at the moment of the click: find the button again then.
        for attempt in range(3):
            try:
                button = self.find(css)
                button.click()
                break
            except WebDriverException:
                if attempt == 2:
                    raise
                time.sleep(0.5)
        # Mid-navigation, Chrome may answer a look at the old button with an inspector error rather
        # than "stale": ask again until the answer is "stale".
        WebDriverWait(self.driver, timeout, ignored_exceptions=(WebDriverException,)).until(
            expected_conditions.staleness_of(button)
        )
        WebDriverWait(self.driver, timeout).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )

    def sign_in(self, token: str) -> None:
        """Enter the approver token in the header's form."""
        self.find("#token").send_keys(token)
        self.submit("#login")

    def forget_log(self) -> None:
        """Drop what the browser logged so far (what an earlier test left)."""
        self.driver.get_log("browser")

    def errors(self, *, expected_statuses: tuple[int, ...] = ()) -> list[dict[str, Any]]:
        """Severe browser log entries since the last call, less loads refused with an expected status."""
        entries = self.driver.get_log("browser")
        severe = [e for e in entries if e["level"] == "SEVERE"]
        allowed = tuple(f"status of {status}" for status in expected_statuses)
        found = [
            e
            for e in severe
            if not (e.get("source") == "network" and any(a in e["message"] for a in allowed))
        ]
        self.seen_errors.extend(found)
        return found

    def screenshot(self, name: str) -> Path:
        """Save the page as ``<name>.png`` among the artifacts (and in the copy folder when set)."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        self.driver.save_screenshot(str(path))
        if copy := os.environ.get(SCREENSHOT_COPY):
            Path(copy).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(copy) / path.name)
        return path

    def quit(self) -> None:
        """Close the browser."""
        self.driver.quit()


async def until(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll ``condition`` (without blocking the event loop between polls) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # an element between two renders: look again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last seen: {value!r})")
        await asyncio.sleep(0.2)
