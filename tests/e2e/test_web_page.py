"""The web page at / in a real browser against the real system: Debian's ``chromium`` driven
headless by Playwright (Python) against the gateway, the inference and hedger workers and Redis
as real processes (``wardrobe up``'s), serving the bundled model from ``models/``.

Every browser context here blocks each request that is not to the gateway on 127.0.0.1, so the
page and ``/docs`` are shown to work with the network off. Screenshots at phone (390×844) and
desktop (1280×800) size go to ``var/screenshots/`` (README: ``docs/img/web-phone.png`` is one).

Needs the ``chromium`` package (``apt-get install -y chromium``; ``.ci/run`` installs it): without
it these tests skip and say so. Playwright's own browser download is never used.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from services import launcher
from shared.config import BUNDLED_MODELS_DIR, REPO_ROOT, CommonSettings
from shared.storage import PhotoStore
from tests.conftest import _fresh_database
from tests.factories import garment_jpeg

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
OPERATOR_KEY = f"web-operator-{uuid.uuid4().hex}"
TIMEOUT_MS = 60_000  # a bound on waiting for the page, not a speed check: a busy CI machine is slow


@dataclass
class WebSystem:
    url: str
    photo_dir: Path
    api: httpx.Client  # as an operator: checks what the page stored


@pytest.fixture(scope="module")
def web_system(redis_url: str, env_settings: CommonSettings,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebSystem]:
    """The system as ``wardrobe up`` runs it, with the bundled model (its own database and Redis
    namespace: the tiny-model ``system`` of the other e2e tests may run beside it)."""
    data_dir = tmp_path_factory.mktemp("web")
    database = _fresh_database(env_settings, data_dir)
    database_url = next(database)
    group = launcher.ProcessGroup(log_dir=data_dir / "logs")
    try:
        stack = launcher.start_stack(
            group, data_dir=data_dir, model_dir=BUNDLED_MODELS_DIR, redis_url=redis_url, database_url=database_url,
            namespace=f"wardrobe-web-{uuid.uuid4().hex[:8]}", services=("inference", "hedger"),
            model_store=data_dir / "model-store", bootstrap_key=OPERATOR_KEY,
        )
        with httpx.Client(base_url=stack.url, timeout=40, headers={"Authorization": f"Bearer {OPERATOR_KEY}"}) as api:
            yield WebSystem(stack.url, data_dir / "photos", api)
    except Exception:
        print("\n".join(f"----- {c.name}\n{c.tail(80)}" for c in group.children))
        raise
    finally:
        group.stop_all()
        database.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed: apt-get install -y chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@dataclass
class Offline:
    """Requests the context tried to send anywhere but the gateway (each one aborted)."""

    blocked: list[str] = field(default_factory=list)


@contextmanager
def offline_page(browser, web: WebSystem, viewport: dict) -> Iterator[tuple[object, Offline]]:  # noqa: ANN001
    """A fresh browser context (its own cookies: another person) whose network is the gateway only."""
    gateway = urlparse(web.url).netloc
    offline = Offline()
    context = browser.new_context(viewport=viewport, base_url=web.url, device_scale_factor=1,
                                  has_touch=viewport is PHONE, is_mobile=viewport is PHONE)
    context.set_default_timeout(TIMEOUT_MS)

    def route(r) -> None:  # noqa: ANN001
        host = urlparse(r.request.url).netloc
        if host == gateway or r.request.url.startswith(("blob:", "data:")):
            r.continue_()
        else:
            offline.blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    try:
        yield page, offline
    finally:
        context.close()


def _open(page) -> None:  # noqa: ANN001
    page.goto("/")
    page.wait_for_selector("body[data-ready=true]")


def _classify(page, photo: Path) -> str:  # noqa: ANN001
    """Choose ``photo`` in the page, wait for the answer; the classification's id."""
    with page.expect_response(lambda r: r.url.split("?")[0].endswith("/v1/classifications")
                              and r.request.method == "POST") as posted:
        page.set_input_files("#photo", str(photo))
    job_id = posted.value.json()["id"]
    page.wait_for_selector("#answer:not([hidden])")
    return job_id


def _photo(tmp_path: Path, name: str, **kwargs) -> Path:
    path = tmp_path / f"{name}.jpg"
    path.write_bytes(garment_jpeg(**kwargs))
    return path


def _shot(page, name: str, full_page: bool = True) -> None:  # noqa: ANN001
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def _feedback(web: WebSystem, job_id: str) -> dict:
    r = web.api.get(f"/v1/classifications/{job_id}/feedback")
    assert r.status_code == 200, r.text
    (current,) = r.json()["current"]
    return current


def test_a_photo_is_answered_confirmed_with_yes_and_found_in_my_wardrobe(browser, web_system, tmp_path):
    with offline_page(browser, web_system, PHONE) as (page, offline):
        _open(page)
        job_id = _classify(page, _photo(tmp_path, "tee", kind="tee"))
        answer = page.locator("#answer-text").inner_text()
        assert answer and page.locator("#answer-icon").inner_text().strip()
        assert re.fullmatch(r"\d+ % likely, for this photo", page.locator("#answer-sure").inner_text())
        assert page.locator("#answer-promise").inner_text() == "Set to be right at least 90 % of the time"
        _shot(page, "phone-answer-90")

        # "how sure must it be": the same photo re-hedged at once, through ?accuracy=
        with page.expect_response(lambda r: f"/v1/classifications/{job_id}?accuracy=0.99" in r.url) as rehedged:
            page.locator("#accuracy").fill("0.99")
        assert rehedged.value.json()["rehedged"] is True
        page.wait_for_selector("#answer-promise:has-text('at least 99 %')")
        page.locator("#accuracy").fill("0.6")  # dares more: the README's screenshot
        page.wait_for_selector("#answer-promise:has-text('at least 60 %')")
        page.locator("#accuracy").evaluate("slider => slider.blur()")  # no focus ring in the picture
        _shot(page, "phone-answer")

        page.get_by_role("button", name="Yes").click()
        if page.locator("#refine").is_visible():  # a hedged answer: one more tap names the leaf
            _shot(page, "phone-refine")
            page.locator("#refine-options button").first.click()
        page.wait_for_selector("#done:not([hidden])")
        saved = page.locator("#done-text").inner_text()
        assert saved.startswith("Saved to your wardrobe as")

        verdict = _feedback(web_system, job_id)
        assert verdict["correct"] is True  # a Yes, possibly made more specific: never a correction

        page.get_by_role("button", name="See my wardrobe").click()
        item = page.locator(f"li.item[data-id='{job_id}']")
        item.wait_for()
        assert "confirmed by you" in item.inner_text()
        # the thumbnail loaded (decode() rejects for a broken image); the page's CSP forbids eval, so no wait_for_function
        assert item.locator("img").evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
        _shot(page, "phone-wardrobe")
        assert offline.blocked == []


def _open_chooser_from_the_keyboard(page):  # noqa: ANN001, ANN202
    """The file chooser opened by Space, or else Enter, on the focused photo picker.

    Both keys activate a focused file input. Once in a full CI run (not reproduced in seven runs
    here, on the same Chromium 156) a Space press opened nothing; the press is repeated, with
    the picker still focused, rather than the test waiting a minute on a lost key event.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for key in ("Space", "Enter", "Space"):
        assert page.evaluate("document.activeElement && document.activeElement.id") == "photo"
        try:
            with page.expect_file_chooser(timeout=15_000) as chooser:
                page.keyboard.press(key)
            return chooser.value
        except PlaywrightTimeout:
            continue
    raise AssertionError("neither Space nor Enter on the focused photo picker opened the file chooser")


def test_the_whole_yes_flow_works_from_the_keyboard(browser, web_system, tmp_path):
    with offline_page(browser, web_system, DESKTOP) as (page, _):
        _open(page)
        active = lambda: page.evaluate("document.activeElement && document.activeElement.id")  # noqa: E731
        for _ in range(8):  # skip link, tabs (phone only), then the photo picker
            page.keyboard.press("Tab")
            if active() == "photo":
                break
        assert active() == "photo"
        chooser = _open_chooser_from_the_keyboard(page)
        chooser.set_files(str(_photo(tmp_path, "kbd-tee", kind="tee", color=(200, 170, 40), seed=4)))
        page.wait_for_selector("#answer:not([hidden])")
        assert active() == "answer-title"  # the answer is announced and the next Tab reaches Yes
        page.keyboard.press("Tab")
        assert active() == "yes"
        page.keyboard.press("Enter")
        if page.locator("#refine").is_visible():  # focus is on the most likely class under the answer
            page.keyboard.press("Enter")
        page.wait_for_selector("#done:not([hidden])")
        assert active() == "done-text"
        page.locator("li.item").first.wait_for()  # the wardrobe reloads after the verdict is stored
        assert page.locator("li.item").count() == 1


def test_no_opens_the_taxonomy_and_the_picked_class_is_stored(browser, web_system, tmp_path):
    with offline_page(browser, web_system, DESKTOP) as (page, offline):
        _open(page)
        job_id = _classify(page, _photo(tmp_path, "trousers", kind="trousers", color=(60, 60, 60), seed=1))
        answered = web_system.api.get(f"/v1/classifications/{job_id}").json()["answer"]["node"]["name"]
        # a class the answer does not cover, reached from the top of the tree
        target, top, leaf = (("accessory.hat", "Accessory", "Hat") if answered.startswith("feet")
                             else ("feet.shoes", "Footwear", "Shoes"))
        page.get_by_role("button", name="No").click()
        page.wait_for_selector("#correct:not([hidden])")
        _shot(page, "desktop-no")
        for _ in range(3):  # up to the top of the tree (it is three levels deep)
            if page.locator("#correct-up").is_visible():
                page.locator("#correct-up").click()
        assert page.locator("#correct-up").is_hidden()
        page.locator("#correct-options button", has_text=top).click()
        page.locator("#correct-options button", has_text=leaf).first.click()
        page.wait_for_selector("#done:not([hidden])")

        verdict = _feedback(web_system, job_id)
        assert verdict["node"] == target and verdict["correct"] is False and verdict["answer"] == answered
        item = page.locator(f"li.item[data-id='{job_id}']")
        item.wait_for()
        assert "corrected by you" in item.inner_text() and leaf in item.inner_text()
        _shot(page, "desktop-corrected")
        assert offline.blocked == []


def test_a_removed_garment_and_its_photo_are_gone(browser, web_system, tmp_path):
    with offline_page(browser, web_system, DESKTOP) as (page, offline):
        _open(page)
        job_id = _classify(page, _photo(tmp_path, "red-tee", kind="tee", color=(170, 40, 40), seed=2))
        page.get_by_role("button", name="Yes").click()
        if page.locator("#refine").is_visible():
            page.locator("#refine-options button").first.click()
        item = page.locator(f"li.item[data-id='{job_id}']")
        item.wait_for()
        key = web_system.api.get(f"/v1/classifications/{job_id}/feedback").json()["current"][0]["photo_key"]
        store = PhotoStore(web_system.photo_dir)
        assert store.path(key).exists()
        _shot(page, "desktop-wardrobe")

        item.get_by_role("button", name=re.compile("^Remove")).click()
        dialog = page.locator("#remove-dialog")
        assert dialog.is_visible() and not page.locator("#remove-keep").is_checked()
        _shot(page, "desktop-remove", full_page=False)
        page.locator("#remove-confirm").click()
        item.wait_for(state="detached")
        assert not store.path(key).exists()
        assert web_system.api.get(f"/v1/classifications/{job_id}").status_code == 404
        assert offline.blocked == []


def test_another_browser_sees_nothing_of_the_first_ones_wardrobe(browser, web_system, tmp_path):
    with offline_page(browser, web_system, PHONE) as (first, _):
        _open(first)
        job_id = _classify(first, _photo(tmp_path, "green-tee", kind="tee", color=(40, 120, 60), seed=3))
        first.get_by_role("button", name="Yes").click()
        if first.locator("#refine").is_visible():
            _shot(first, "phone-refine")
            first.locator("#refine-options button").first.click()
        first.wait_for_selector("#done:not([hidden])")
        with offline_page(browser, web_system, PHONE) as (second, _):
            _open(second)
            second.get_by_role("button", name=re.compile("^My wardrobe")).click()
            assert second.locator("li.item").count() == 0
            assert second.locator("#wardrobe-empty").is_visible()
            for path in (f"/v1/classifications/{job_id}", f"/v1/classifications/{job_id}/thumbnail"):
                assert second.request.get(path).status == 404  # with the second browser's cookie
            assert second.request.get("/v1/wardrobe").json()["items"] == []
            _shot(second, "phone-empty")


def test_a_photo_that_is_not_an_image_gets_a_clear_message(browser, web_system, tmp_path):
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_bytes(b"these are my shopping notes, not a photo\n" * 20)
    with offline_page(browser, web_system, PHONE) as (page, _):
        _open(page)
        page.set_input_files("#photo", str(not_a_photo))
        status = page.locator("#status.error")
        status.wait_for()
        assert "not a photo Wardrobe can read" in status.inner_text()


def test_a_session_lost_while_the_page_is_open_is_said_with_a_way_on(browser, web_system, tmp_path):
    with offline_page(browser, web_system, PHONE) as (page, _):
        _open(page)
        page.context.clear_cookies()  # cleared in another tab, or expired
        page.set_input_files("#photo", str(_photo(tmp_path, "tee", kind="tee")))
        banner = page.locator("#banner")
        banner.wait_for()
        assert "session has ended" in banner.inner_text()
        # the new session's request is held: until it is answered the banner stays, so a photo chosen
        # the moment the banner goes always travels with the new cookie (it once went out in between)
        held = []
        page.route("**/v1/session", lambda r: held.append(r) if r.request.method == "POST" else r.continue_())
        page.get_by_role("button", name="Start a new session").click()
        while not held:
            page.wait_for_timeout(20)
        assert banner.is_visible() and page.get_by_role("button", name="Start a new session").is_disabled()
        held[0].continue_()
        banner.wait_for(state="hidden")
        _classify(page, _photo(tmp_path, "tee2", kind="tee", seed=5))  # works again, in a new wardrobe


def test_a_gateway_that_cannot_be_reached_is_said(browser, web_system, tmp_path):
    with offline_page(browser, web_system, PHONE) as (page, _):
        _open(page)
        page.route("**/v1/classifications*", lambda r: r.abort("connectionrefused"))  # the network, not our code
        page.set_input_files("#photo", str(_photo(tmp_path, "tee", kind="tee")))
        status = page.locator("#status.error")
        status.wait_for()
        assert "cannot be reached" in status.inner_text()


def test_a_lost_session_is_said_and_a_new_one_started(browser, web_system):
    with offline_page(browser, web_system, PHONE) as (page, _):
        _open(page)
        page.context.clear_cookies()  # the cookie is gone (cleared, or expired)
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert "earlier session ended" in page.locator("#banner").inner_text()


def test_the_api_docs_render_with_the_network_off(browser, web_system):
    with offline_page(browser, web_system, DESKTOP) as (page, offline):
        page.goto("/docs")
        page.wait_for_function("window.SwaggerUIBundle !== undefined")  # Swagger UI's script loaded
        page.wait_for_selector(".swagger-ui .info .title:has-text('Wardrobe')")
        page.wait_for_selector(".opblock-summary-path:has-text('/v1/classifications')")
        _shot(page, "desktop-docs")
        assert offline.blocked == [], offline.blocked
