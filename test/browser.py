"""Headless Chromium through Selenium (Debian's chromium and
chromium-driver), for tests that load a page and read its results."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time

from conftest import require

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'


@contextlib.contextmanager
def chromium(extra_flags: tuple = ()):
    """A headless Chromium WebDriver, quit afterwards."""
    require(
        os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER),
        'Debian packages chromium and chromium-driver',
    )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, 'the selenium package')
    profile = tempfile.mkdtemp(prefix='chromium-test-')
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
        '--user-data-dir=' + profile,
        *extra_flags,
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def run_page(driver, page_url: str, timeout: float = 60) -> dict:
    """Load a test page and wait for its window.results (title 'done')."""
    driver.get(page_url)
    deadline = time.monotonic() + timeout
    while driver.title != 'done':
        if time.monotonic() > deadline:
            raise AssertionError(
                'page did not finish; partial results: %r'
                % driver.execute_script('return window.results')
            )
        time.sleep(0.1)
    return driver.execute_script('return window.results')
