"""A real headless Chromium for page tests (Debian's chromium and chromium-driver), driven by selenium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("chromedriver") is None,
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


def chromium(user_data_dir: Path, width: int = 1280, height: int = 900) -> WebDriver:
    """A headless Chromium with a fresh profile in ``user_data_dir`` and nothing that calls out.

    Raises:
        selenium.common.exceptions.WebDriverException: Chromium or its driver does not start.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={user_data_dir}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    service = Service(
        executable_path=shutil.which("chromedriver"), env={**os.environ, "SE_AVOID_STATS": "true"}
    )
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(20)
    return driver
