"""The login page in a real Chromium (Playwright), with JavaScript off: language, labels,
headings, and logging in with the keyboard alone.

Skips, saying why, when Playwright or a Chromium binary is missing (`apt-get install chromium`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from tests.idp.conftest import REDIRECT, Env
from tests.idp.support import authorize_params, pkce_pair, query_of

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not "
                               "installed")

CHROMIUM = os.environ.get("AKSON_TEST_CHROMIUM") or shutil.which("chromium") or \
    shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM:
        print("SKIP: no chromium binary (apt-get install -y chromium)")
        pytest.skip("no chromium binary found (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, env: Env):  # type: ignore[no-untyped-def]
    context = browser.new_context(java_script_enabled=False, locale="nb-NO")
    page = context.new_page()
    yield page
    context.close()


def _open(page, env: Env) -> None:  # type: ignore[no-untyped-def]
    _, challenge = pkce_pair()
    page.goto(f"{env.url}/auth/authorize?{urlencode(authorize_params(env, challenge))}")


def _tab_to(page, selector: str, limit: int = 40) -> None:  # type: ignore[no-untyped-def]
    """Press Tab until the element matching `selector` has focus (keyboard-only navigation)."""
    target = page.locator(selector)
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"{selector} cannot be reached with Tab")


def _submit_and_follow(page) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Press Enter and return the query of the redirect to the client. The client app is not
    running (and Playwright does not route redirects), so the request itself is what counts."""
    with page.expect_request(lambda r: r.url.startswith(REDIRECT)) as sent:
        page.keyboard.press("Enter")
    return query_of(sent.value.url)


def _every_field_is_labelled(page) -> None:  # type: ignore[no-untyped-def]
    unlabelled = page.eval_on_selector_all(
        "input:not([type=hidden]), textarea, select",
        "els => els.filter(e => !e.labels || e.labels.length === 0).map(e => e.name)")
    assert unlabelled == []


def test_login_page_is_norwegian_labelled_and_has_headings(page, env: Env):  # type: ignore[no-untyped-def]
    _open(page, env)
    assert page.locator("html").get_attribute("lang") == "nb"
    assert page.locator("h1").count() == 1
    assert set(page.locator("h2").all_inner_texts()) == {"Helsepersonell", "Innbygger"}
    _every_field_is_labelled(page)
    assert page.get_by_label("HPR-nummer").count() == 1
    assert page.get_by_label("Fødselsnummer").count() == 1


def test_practitioner_logs_in_with_the_keyboard_alone(page, env: Env):  # type: ignore[no-untyped-def]
    _open(page, env)
    _tab_to(page, "#hpr")
    page.keyboard.type(env.user("Fastlege").id_value)
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Hvor arbeider du nå?")
    assert page.locator("html").get_attribute("lang") == "nb"
    _every_field_is_labelled(page)
    _tab_to(page, "#reason")
    page.keyboard.type("Kontroll")
    _tab_to(page, "button[type=submit]:not(.secondary)")
    query = _submit_and_follow(page)
    assert query["code"] and query["state"] == "st-123"


def test_citizen_logs_in_with_the_keyboard_alone(page, env: Env):  # type: ignore[no-untyped-def]
    _open(page, env)
    _tab_to(page, "#nin")
    page.keyboard.type(env.user("Innbygger").id_value)
    assert _submit_and_follow(page)["code"]


def test_refusal_is_announced_and_the_field_marked(page, env: Env):  # type: ignore[no-untyped-def]
    _open(page, env)
    _tab_to(page, "#hpr")
    page.keyboard.type("999999999")
    page.keyboard.press("Enter")
    alert = page.get_by_role("alert")
    assert "Fant ikke helsepersonell" in alert.inner_text()
    assert page.locator("#hpr").get_attribute("aria-invalid") == "true"
    assert "feil" in (page.locator("#hpr").get_attribute("aria-describedby") or "")
