"""The demo web page in headless Chromium against the local stack: a click changes the next list.

The stack runs in this process (moto, the real handlers, the stream poller) and serves `web/` at its
API's origin. Chromium and its driver are Debian's (`apt-get install chromium chromium-driver`, which
`.ci/run` does); without them the test is skipped here, and fails in CI (`CI=true`).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from infra.local.stack import LocalStack
from infra.local.web import DEFAULT_WEB_DIR
from rtrec.stores.user_state import UserStateStore

LIST_SIZE = 10
# Generous: the stream's batching window is 1 s, but this machine may be loaded.
FOLD_TIMEOUT_S = 60

pytestmark = pytest.mark.slow


def _missing(reason: str) -> NoReturn:
    """Skip on a developer machine; in CI a browser test that cannot run is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    archive = tmp_path_factory.mktemp("web-archive")
    with LocalStack(poll_interval_s=0.05, web_dir=DEFAULT_WEB_DIR, archive_dir=archive) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        _missing("chromium or chromedriver not found (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (requirements/dev.txt)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # CI runs as root, where Chromium's sandbox refuses to start; containers have a tiny /dev/shm.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, timeout_s: float, message: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(condition, message)


# One script run reads the page at one moment (the list is replaced as a whole when it changes).
_SNAPSHOT = """
const list = document.getElementById("recommendations");
const rows = Array.from(list.querySelectorAll("li[data-item-id]"));
return {
  recommendation_id: list.dataset.recommendationId || null,
  variant: list.dataset.variant || null,
  items: rows.map((row) => row.dataset.itemId),
  reasons: rows.map((row) => row.dataset.reason),
  new: rows.map((row) => row.dataset.new === "true"),
  status: document.getElementById("status").textContent,
  state: document.getElementById("app").dataset.state,
};
"""


def _shown(driver: Any) -> dict[str, Any]:
    """What the page shows: the answer's id and variant, the items (id, reason, new?), the status line."""
    snapshot: dict[str, Any] = driver.execute_script(_SNAPSHOT)
    return snapshot


def test_a_click_on_an_item_changes_the_next_list(
    browser: Any, stack: LocalStack, screenshot_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    user = f"demo-browser-{uuid.uuid4().hex[:8]}"
    browser.get(stack.web_url)
    field = browser.find_element(By.ID, "user")
    field.clear()
    field.send_keys(user)
    browser.find_element(By.ID, "sign-in-button").click()
    _wait(browser, lambda d: _shown(d)["state"] == "ready", 30, "the first list never showed")

    first = _shown(browser)
    assert len(first["items"]) == LIST_SIZE
    assert len(set(first["items"])) == LIST_SIZE
    # A new user: nothing in the state yet, so the list is the popular one and the interests the prior.
    assert set(first["reasons"]) <= {"popular", "cold_start", "promoted"}, first["reasons"]
    assert browser.find_element(By.ID, "answer-source").text == "popular"
    assert browser.find_elements(By.CSS_SELECTOR, "#interests li[data-genre]")
    assert "not show" not in first["status"]

    clicked = first["items"][1]
    browser.find_element(By.CSS_SELECTOR, f'li[data-item-id="{clicked}"] button').click()
    _wait(
        browser,
        lambda d: (
            (s := _shown(d))["state"] in ("ready", "error")
            and s["recommendation_id"] != first["recommendation_id"]
        ),
        FOLD_TIMEOUT_S,
        "the list was not refreshed after the click",
    )
    after = _shown(browser)
    assert after["state"] == "ready", after["status"]
    assert "reached your state" in after["status"], after["status"]
    print(f"\n{after['status']}")  # how long the click took to reach the state (-s shows it)

    # The click reached the user's state through the API, the stream and the ingest function...
    store = UserStateStore.from_client(
        stack.clients("dynamodb")["dynamodb"], stack.resource("UserStateTable")
    )
    state = store.get(user)
    assert state is not None
    assert {(i.item_id, i.type) for i in state.recent} >= {(clicked, "click"), (clicked, "view")}
    # Both events name the list they came from and the item's position in it (archived as streamed).
    assert stack.archive is not None
    archived = [
        json.loads(line)
        for path in (stack.archive.root / "events" / "kind=event").rglob("*.jsonl.gz")
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]
    # The lists themselves are archived as impressions (the recommend function's log subscription).
    shown = {
        json.loads(line)["recommendation_id"]
        for path in (stack.archive.root / "events" / "kind=impression").rglob("*.jsonl.gz")
        for line in gzip.decompress(path.read_bytes()).splitlines()
    }
    assert first["recommendation_id"] in shown
    assert sorted(
        (e["type"], e["item_id"], e.get("recommendation_id"), (e.get("context") or {}).get("position"))
        for e in archived
        if e["user_id"] == user
    ) == [
        ("click", clicked, first["recommendation_id"], "2"),
        ("view", clicked, first["recommendation_id"], "2"),
    ]
    # ...and the next list, asked once the state held it, is another one, without the clicked item.
    assert after["items"] != first["items"]
    assert clicked not in after["items"]
    assert len(after["items"]) == LIST_SIZE
    assert any(after["new"]), "the items new in this list are marked"
    # The variant row shows exactly when the answer names a variant.
    assert browser.find_element(By.ID, "answer-variant-row").is_displayed() == (after["variant"] is not None)
    events = browser.find_elements(By.CSS_SELECTOR, "#events li[data-accepted='true']")
    assert sorted(e.get_attribute("data-type") for e in events) == ["click", "view"]
    assert "Predicted by the model" in browser.find_element(By.ID, "interests-source").text

    assert browser.save_screenshot(str(screenshot_path))

    # No script error, no blocked request (the page loads nothing from elsewhere: CSP 'self').
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
