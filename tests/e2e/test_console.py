"""The web console in a real browser (Debian's headless Chromium, driven by Playwright), against
the four services on the real broker and the review-notifier's HTTP API: a reviewer signs in with
their token, opens a pending review, approves it after the confirmation step, and the model is
deployed; someone the review does not ask sees no buttons; a forged vote (no CSRF token, or
another session's) is refused and casts nothing; an operator re-drives a dead letter.

SIGNOFF_CONSOLE_SCREENSHOTS=docs/console writes the screenshots the README shows (otherwise
they go to the test's own folder).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from playwright.sync_api import Browser, Page, sync_playwright

from services.review_notifier.api_tokens import TokenFile, issue
from shared import topics
from shared.events import utcnow
from signoff.devstack import free_port
from tests.e2e.conftest import Env

pytestmark = pytest.mark.kafka
CHROMIUM = "/usr/bin/chromium"  # Debian's package (deploy/chromium.sh installs it); never a downloaded browser


@pytest.fixture(scope="module")
def console(e2e: Env) -> Iterator[str]:
    """The console as a process of the stack, as the `console` principal, on a port of its own."""
    port = free_port()
    e2e.stack.service_env["console"] = {
        **e2e.cluster.access("console").env(), "CONSOLE_HTTP_PORT": str(port),
        "CONSOLE_PUBLIC_URL": f"http://127.0.0.1:{port}", "CONSOLE_REVIEW_URL": e2e.review_url,
        "CONSOLE_INDEX_DB": str(e2e.workdir / "console" / "audit.sqlite"), "CONSOLE_REFRESH_SECONDS": "0.5"}
    e2e.stack.start("console", timeout=120)
    yield f"http://127.0.0.1:{port}"
    e2e.stack.stop("console")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("SIGNOFF_CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sign_in(browser: Browser, url: str, token: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(url + "/reviews")
    assert page.url.endswith("/signin"), page.url  # no page without a session
    page.fill("#credential", token)
    page.click("button[type=submit]")
    assert page.url.endswith("/reviews"), page.url
    return page


def until(page: Page, url: str, selector: str, text: str = "", timeout: float = 90.0) -> None:
    """Load `url` again until `selector` (holding `text`) is on it: the console follows the topics."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.goto(url)
        found = page.locator(selector)
        if found.count() and text in found.first.inner_text():
            return
        page.wait_for_timeout(250)  # a reload every quarter second, bounded by the deadline
    raise AssertionError(f"{selector!r} with {text!r} not on {url} within {timeout}s:\n{page.content()[:3000]}")


def submit(e2e: Env, model: str, accuracy: float = 0.85) -> str:
    path, _ = e2e.artifact(f"{model}-1.0.0.onnx")
    return e2e.cli("submit", "--model", model, "--version", "1.0.0", "--artifact", str(path),
                   "--metric", f"accuracy={accuracy}", "--data-version", "2026-11-01", "--code-commit", "3f2c9ab",
                   "--submitter", "carol").stdout.strip()


def test_a_reviewer_approves_with_confirmation_and_the_model_deploys(e2e: Env, console: str, browser: Browser,
                                                                     shots: Path) -> None:
    sid = submit(e2e, "console-churn")
    page = sign_in(browser, console, e2e.tokens["alice"])
    until(page, console + "/reviews", "#mine", "console-churn")
    page.screenshot(path=shots / "reviews.png", full_page=True)
    page.click(f"#mine a[href='/reviews/{sid}']")
    assert page.locator("#approve").is_visible() and page.locator("#reject").is_visible()
    assert "accuracy" in page.locator("#metrics").inner_text()
    page.screenshot(path=shots / "review.png", full_page=True)

    page.click("#approve")
    assert page.locator("#question").inner_text() == "Approve console-churn 1.0.0?"
    page.fill("#reason", "within the agreed band")
    page.check("#confirmed")
    page.screenshot(path=shots / "confirm.png", full_page=True)
    page.click("#confirm")
    assert "approved" in page.locator("#voted").inner_text()

    until(page, f"{console}/submissions/{sid}", "#timeline", topics.DEPLOYMENT_SUCCEEDED)
    assert "deployed" in page.locator("h1").inner_text()
    assert (e2e.model_store / "console-churn" / "1.0.0").is_dir()
    page.screenshot(path=shots / "submission.png", full_page=True)
    until(page, f"{console}/models/console-churn", "#production", "1.0.0")
    page.screenshot(path=shots / "model.png", full_page=True)
    page.goto(f"{console}/submissions")
    page.screenshot(path=shots / "submissions.png", full_page=True)


def test_a_non_approver_sees_no_buttons_and_a_forged_vote_is_refused(e2e: Env, console: str,
                                                                      browser: Browser) -> None:
    sid = submit(e2e, "console-fraud")
    carol = sign_in(browser, console, e2e.tokens["carol"])  # not an approver of the default workflow
    until(carol, f"{console}/reviews/{sid}", "#status", "Pending")
    assert carol.locator("#approve").count() == 0 and carol.locator("#reject").count() == 0
    carols_token = carol.locator("input[name=csrf]").first.get_attribute("value")  # her sign-out form's
    response = carol.goto(f"{console}/reviews/{sid}/confirm?decision=approve")
    assert response is not None and response.status == 403

    alice = sign_in(browser, console, e2e.tokens["alice"])
    vote = {"decision": "approve", "confirmed": "yes", "reason": "forged"}
    for forged in ({}, {"csrf": carols_token or ""}):
        response = alice.request.post(f"{console}/reviews/{sid}/vote", form={**vote, **forged})
        assert response.status == 403 and "CSRF" in response.text()
    review = httpx.get(f"{e2e.review_url}/reviews/{sid}", headers=e2e.auth("dave")).json()
    assert review["votes"] == [] and review["decision"] is None  # nothing was cast


def test_an_operator_re_drives_a_dead_letter(e2e: Env, console: str, browser: Browser, shots: Path) -> None:
    # Playwright's sync API holds this thread's event loop: the producer runs on a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, publish_garbage(e2e, b"console-letter")).result(timeout=60)
    token, record = issue("oncall", "operator", timedelta(hours=1), utcnow())
    TokenFile(e2e.workdir / "tokens.json").add(record)
    page = sign_in(browser, console, token)
    until(page, f"{console}/dead-letters", "#letters", "console-letter")
    page.screenshot(path=shots / "dead-letters.png", full_page=True)
    row = page.locator("#letters tr", has_text="console-letter").first
    row.locator("button", has_text="Re-drive").click()
    assert page.locator("#message").inner_text().startswith("re-driven"), page.locator("#message").inner_text()

    approver = sign_in(browser, console, e2e.tokens["alice"])  # not an operator: no dead letters at all
    response = approver.goto(f"{console}/dead-letters")
    assert response is not None and response.status == 403 and approver.locator("#letters").count() == 0


async def publish_garbage(e2e: Env, key: bytes) -> None:
    """A record the validator cannot decode: it dead-letters it with its reason."""
    producer = AIOKafkaProducer(**e2e.pipeline.client_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(topics.MODEL_SUBMITTED, b"{not json", key=key)
    finally:
        await producer.stop()
