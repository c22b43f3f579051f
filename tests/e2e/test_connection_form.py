"""
The Octopods connection form in a real browser: Debian's headless Chromium, driven by Playwright,
signs in to the deployment's UI, adds a connection of type Octopods, and checks the form that
``get_provider_info()`` declares (relabelled and hidden fields, placeholders, extra fields).

The screenshot of the form goes to the deployment's folder; with ``OCTOPODS_E2E_UPDATE_DOCS=1``
it also replaces ``docs/img/connection-form.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_octopods.get_provider_info import PLACEHOLDERS
from tests.e2e.deployment import ROOT, E2EError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_octopods.testing import OctopodsSimulator
    from tests.e2e.deployment import AirflowDeployment

CHROMIUM = Path(os.environ.get("OCTOPODS_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SCREENSHOT = ROOT / "docs" / "img" / "connection-form.png"


@pytest.fixture
def page(airflow: AirflowDeployment) -> Iterator[Any]:
    """A signed-in browser page on the deployment's UI (a screenshot is kept if the test fails)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise E2EError(
            f"{CHROMIUM} is missing. Run `bash scripts/e2e-setup.sh` (installs Debian's chromium)."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            page.goto(f"{airflow.base_url}/connections")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(airflow.admin_password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/connections")
            yield page
        finally:
            try:
                page.screenshot(path=str(airflow.home / "browser-last-page.png"))
            finally:
                browser.close()


def test_connection_form_shows_octopods_fields_and_saves_a_working_connection(
    airflow: AirflowDeployment, simulator: OctopodsSimulator, page: Any
) -> None:
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    connection_id = dialog.get_by_role("textbox").first
    connection_id.fill("octopods_default")  # as in the docs' screenshot; saved under another id
    connection_type = dialog.get_by_role("combobox")
    connection_type.click()
    connection_type.fill("Octopods")
    page.get_by_role("option", name="Octopods", exact=True).click()

    url = dialog.get_by_label("Octopods URL")
    key = dialog.get_by_label("Channel API key")
    url.wait_for(state="visible")
    assert key.is_visible()
    assert key.get_attribute("type") == "password"
    assert url.get_attribute("placeholder") == PLACEHOLDERS["host"]
    assert key.get_attribute("placeholder") == PLACEHOLDERS["password"]
    labels = [" ".join(text.split()) for text in dialog.locator("label").all_inner_texts()]
    for hidden in ("Login", "Schema", "Port", "Host", "Password"):
        assert hidden not in labels, f"{hidden!r} should be hidden or relabelled: {labels}"
    for name in ("login", "schema", "port"):
        assert not dialog.locator(f"input[name='{name}']").is_visible()
    screenshot = airflow.home / "connection-form.png"
    dialog.screenshot(path=str(screenshot))
    if os.environ.get("OCTOPODS_E2E_UPDATE_DOCS"):
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, DOCS_SCREENSHOT)

    connection_id.fill("octopods_from_ui")
    url.fill(simulator.url)
    key.fill(simulator.api_key)
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    assert dialog.get_by_text("Request timeout (seconds)").is_visible()
    assert dialog.get_by_text("Allow plain http:// to a non-loopback host").is_visible()
    dialog.get_by_role("button", name="Save").click()
    page.get_by_role("row").filter(has_text="octopods_from_ui").wait_for(state="visible")

    saved = airflow.api("GET", "/connections/octopods_from_ui")
    assert saved["conn_type"] == "octopods"
    assert saved["host"] == simulator.url
    assert saved["password"] != simulator.api_key  # the API never shows the key back
    assert "Connection success!" in airflow.cli("connections", "test", "octopods_from_ui").stdout
    airflow.cli("connections", "delete", "octopods_from_ui")
