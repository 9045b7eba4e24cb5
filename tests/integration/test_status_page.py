"""The status page at ``/`` in a real headless browser (Debian's chromium and chromedriver,
installed by ``make test``'s setup: deploy/ensure-browser.sh), served by gunicorn as the
Procfile runs it, fed by a real worker and beat against the simulator.

The page asks for the token, then draws the fleet live: a job's transitions appear without a
reload, a pause shows with its reason, and the breaker shows open while the simulator answers
455 maintenance. ``BACKBEAT_SCREENSHOT=docs/status-page.png`` keeps a screenshot.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.integration

TOKEN = "producer-token-1"
#: a browser step's bound (the page redraws every second when healthy)
STEP_S = 60.0


def _browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture
def browser() -> Iterator[Any]:
    paths = _browser_paths()
    if paths is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are missing: make test installs them "
                        "(deploy/ensure-browser.sh)")
        pytest.skip("chromium/chromedriver not installed (bash deploy/ensure-browser.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1100", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=paths[1]), options=options)
    driver.set_page_load_timeout(STEP_S)
    yield driver
    driver.quit()


def test_status_page_follows_the_fleet_live(fleet, sim, browser, payload, wait):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    f = fleet("page", workers=1, concurrency=2, web=True, BACKBEAT_BREAKER_BASE="30")
    web = f.env["BACKBEAT_CALLBACK_BASE_URL"]
    until = WebDriverWait(browser, STEP_S, poll_frequency=0.2)

    def text(selector: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, selector).text

    def attr(selector: str, name: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, selector).get_attribute(name) or ""

    # without a token the page asks for one; with it, it goes live
    browser.get(f"{web}/")
    until.until(lambda d: attr("#conn", "data-state") == "token")
    assert browser.find_element(By.ID, "login").is_displayed()
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    until.until(lambda d: attr("#conn", "data-state") == "live")
    assert text("#account") == f.client.overview()["account"]
    browser.execute_script("window.__sameDocument = 'yes'")  # gone if the page reloads

    # a pause shows with its reason; a job's transitions show as they happen
    f.client.pause("status page test")
    until.until(lambda d: attr("#pause", "data-paused") == "true")
    assert "paused: status page test" in text("#pause")
    job = f.client.enqueue("add-vocals", payload.vocals("Status page"))["id"]
    row = f'#jobs tr[data-job="{job}"] td.state'
    until.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, row), "queued"))
    until.until(lambda d: text("#state-queued .n") == "1")
    f.client.resume()
    until.until(lambda d: attr("#pause", "data-paused") == "false")
    until.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, row), "succeeded"))
    assert f.client.get(job)["state"] == "succeeded"
    until.until(lambda d: text("#state-succeeded .n") == "1")
    assert browser.execute_script("return window.__sameDocument") == "yes", "page reloaded"
    assert int(browser.execute_script("return document.body.dataset.pictures")) >= 2

    # the simulator in maintenance: the next submission answers 455 and the breaker opens
    sim.set_knobs(maintenance=True)
    held = f.client.enqueue("add-vocals", payload.vocals("During maintenance"))["id"]
    until.until(lambda d: attr("#breaker", "data-state") in ("open", "half-open"))
    trips = re.search(r"\((\d+) trips\)", text("#breaker"))
    assert trips and int(trips.group(1)) >= 1, text("#breaker")
    assert f.client.limiter()["breaker"]["state"] in ("open", "half-open")
    assert f.client.get(held)["state"] == "queued"  # kept, not failed
    assert browser.execute_script("return window.__sameDocument") == "yes", "page reloaded"
    shot = os.environ.get("BACKBEAT_SCREENSHOT")
    if shot:
        browser.save_screenshot(shot)

    # the token may come in the address's fragment, which the page then drops from the address
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{web}/?again#token={TOKEN}")
    until.until(lambda d: attr("#conn", "data-state") == "live")
    assert "token" not in browser.current_url
    for page_source in (browser.page_source,):
        assert f.settings.api_key.reveal() not in page_source
