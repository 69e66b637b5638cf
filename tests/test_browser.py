"""The app in a real browser: Debian's Chromium, driven by Playwright, against `streamlit run app.py`.

Covers what AppTest cannot: the upload component's JavaScript (file input, direct PUT to the local storage
endpoint, progress, result), the sweep validating the file, the pages a person sees. Screenshots of each page go
to test-output/browser/; with UPDATE_README_SCREENSHOTS=1 the list and detail ones are also copied to
docs/screenshots/ for the README (not by default, so a test run leaves the work tree as it was).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.app_server import ROOT, running_app
from tests.conftest import EQ12_PATH

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT_DIR = ROOT / "test-output" / "browser"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TIMEOUT_MS = 30_000

if not CHROMIUM.exists():
    pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh app process (lifespan, API routes and sweep included) on a temp data dir and a free port, opened
    at http://localhost:<port> while its LORA_PUBLIC_BASE_URL says 127.0.0.1."""
    data_dir = tmp_path_factory.mktemp("browser-data")
    settings = {"LORA_SWEEP_INTERVAL_SECONDS": "0.5", "LORA_AUTH_MODE": "local", "LORA_LOCAL_USER_ID": "browser-test"}
    with running_app(data_dir, **settings) as url:
        # The browser opens the app by another name than LORA_PUBLIC_BASE_URL's: uploads must still work, so
        # the page hands the component a relative upload URL (lora_ui.components.browser_url).
        yield url.replace("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def _screenshot(page: object, name: str) -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"{name}.png"
    page.wait_for_timeout(800)  # let charts and fonts settle  # type: ignore[attr-defined]
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def _full_height_screenshot(page: object, name: str) -> Path:
    """Streamlit scrolls inside its main container, so `full_page` stops at the viewport: grow the viewport."""
    height = page.get_by_test_id("stMainBlockContainer").evaluate("e => e.scrollHeight")  # type: ignore[attr-defined]
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 200, 8000)})  # type: ignore[attr-defined]
    try:
        return _screenshot(page, name)
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})  # type: ignore[attr-defined]


def _choose_file_and_fill(page: object, name: str, file: Path) -> None:
    page.get_by_role("heading", name="Upload a dataset").wait_for()  # type: ignore[attr-defined]
    page.get_by_label("Name").fill(name)  # type: ignore[attr-defined]
    # The component renders in the page's DOM, inside an open shadow root, which Playwright's locators pierce.
    page.get_by_test_id("dataset-file-input").set_input_files(str(file))  # type: ignore[attr-defined]
    chosen = page.get_by_test_id("dataset-file-name")  # type: ignore[attr-defined]
    sync_api.expect(chosen).to_have_text(file.name)
    sync_api.expect(page.get_by_test_id("dataset-file-size")).not_to_be_empty()  # type: ignore[attr-defined]


def test_upload_validate_and_browse_eq12(page: object, base_url: str) -> None:
    assert EQ12_PATH.exists(), f"sample missing: {EQ12_PATH}"
    # A page URL first, in a fresh process: ui.py's navigation must still be in charge (see lora_ui.navigation).
    page.goto(f"{base_url}/upload")  # type: ignore[attr-defined]
    _choose_file_and_fill(page, "EQ-12 demo", EQ12_PATH)
    sidebar = page.get_by_test_id("stSidebar")  # type: ignore[attr-defined]
    # ui.py's menu (the hidden detail page and ui.py itself are not in it), not one generated from pages/.
    sync_api.expect(sidebar.get_by_test_id("stSidebarNavLink")).to_have_text(
        [re.compile(r"Datasets$"), re.compile(r"Upload$"), re.compile(r"Notifications$")]
    )
    upload_shot = _screenshot(page, "upload")

    page.get_by_role("button", name="Upload", exact=True).click()  # type: ignore[attr-defined]
    page.wait_for_url("**/dataset?id=*")  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_text("Ready for training.")).to_be_visible()  # type: ignore[attr-defined]
    pairs = page.get_by_test_id("stMetric").filter(has_text="Training pairs")  # type: ignore[attr-defined]
    sync_api.expect(pairs.get_by_test_id("stMetricValue")).to_have_text("44")
    tokens = page.get_by_test_id("stMetric").filter(has_text="Total tokens")  # type: ignore[attr-defined]
    sync_api.expect(tokens.get_by_test_id("stMetricValue")).to_have_text("58.3K")
    sync_api.expect(page.get_by_text("Errors and warnings")).to_be_visible()  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_role("tab", name="Warnings (52)")).to_be_visible()  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_test_id("stChatMessage").first).to_be_visible()  # type: ignore[attr-defined]
    sync_api.expect(page).to_have_title("EQ-12 demo · LoRA Dataset Manager")  # tabs of several datasets differ
    # The result is on screen, so its "ready" notification is read: the sidebar's poll counts none unread.
    sync_api.expect(sidebar.get_by_text("No unread notifications")).to_be_visible(timeout=15_000)
    detail_shot = _screenshot(page, "detail")
    _full_height_screenshot(page, "detail-full")
    page.get_by_role("link", name="All datasets").click()  # type: ignore[attr-defined]
    sync_api.expect(page).not_to_have_title(re.compile("EQ-12"))  # the dataset's title leaves with its page

    page.goto(base_url)  # type: ignore[attr-defined]
    row = page.get_by_text("EQ-12 demo", exact=True)  # type: ignore[attr-defined]
    sync_api.expect(row).to_be_visible()
    sync_api.expect(page.get_by_text("Ready", exact=True).first).to_be_visible()  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_text("training pairs").first).to_be_visible()  # type: ignore[attr-defined]
    sync_api.expect(sidebar.get_by_text("No unread notifications")).to_be_visible()
    list_shot = _screenshot(page, "datasets")

    page.goto(f"{base_url}/notifications")  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_text("“EQ-12 demo” is ready", exact=False).first).to_be_visible()  # type: ignore[attr-defined]
    notifications_shot = _screenshot(page, "notifications")
    main = page.get_by_test_id("stMainBlockContainer")  # type: ignore[attr-defined]
    sync_api.expect(main.get_by_text("· unread", exact=False)).to_have_count(0)
    sync_api.expect(page.get_by_role("button", name="Mark all read")).to_be_disabled()  # type: ignore[attr-defined]

    if os.environ.get("UPDATE_README_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(list_shot, DOCS_SCREENSHOTS / "datasets.png")
        shutil.copyfile(detail_shot, DOCS_SCREENSHOTS / "detail.png")
    for shot in (upload_shot, detail_shot, list_shot, notifications_shot):
        assert shot.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        ("413", "The storage server refused the file as too large (HTTP 413)"),
        ("403", "The upload link was refused (HTTP 403): it has probably expired"),
        ("network", "Network error: the connection to the storage server failed"),
    ],
)
def test_a_failed_upload_says_why_and_keeps_nothing(page: object, base_url: str, refusal: str, expected: str) -> None:
    def refuse(route: object) -> None:
        if refusal == "network":
            route.abort("connectionfailed")  # type: ignore[attr-defined]
        else:
            body = '{"error": "refused by the test"}'
            route.fulfill(status=int(refusal), body=body, content_type="application/json")  # type: ignore[attr-defined]

    page.route("**/api/storage/upload**", refuse)  # type: ignore[attr-defined]
    page.goto(f"{base_url}/upload")  # type: ignore[attr-defined]
    name = f"Refused {refusal}"
    _choose_file_and_fill(page, name, EQ12_PATH)
    page.get_by_role("button", name="Upload", exact=True).click()  # type: ignore[attr-defined]
    alert = page.get_by_test_id("stAlertContentError").filter(has_text="Upload failed")  # type: ignore[attr-defined]
    sync_api.expect(alert).to_contain_text(expected)
    sync_api.expect(alert).to_contain_text("Nothing was saved")
    sync_api.expect(page.get_by_label("Name")).to_have_value(name)  # what was typed survives the failure
    sync_api.expect(page.get_by_test_id("dataset-upload-progress")).to_have_text("Upload failed.")
    if refusal == "413":
        _screenshot(page, "upload-failed")
    page.goto(base_url)  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_role("heading", name="Datasets")).to_be_visible()  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_text(name, exact=True)).to_have_count(0)  # type: ignore[attr-defined]


def test_a_status_link_in_the_api_s_spelling_filters_the_list(page: object, base_url: str) -> None:
    """?status=ready selected nothing (the bound control matches its labels exactly) and the list showed all."""
    page.goto(f"{base_url}/?status=ready")  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_role("radio", checked=True)).to_have_text("Ready")  # type: ignore[attr-defined]
    sync_api.expect(page).to_have_url(re.compile(r"\?status=Ready$"))  # a reload keeps the filter


def test_leaving_the_upload_page_mid_upload_asks_first(page: object, base_url: str) -> None:
    """A menu click during an upload used to stop it without a word; now the user is asked, and may stay."""
    held: list[object] = []
    page.route("**/api/storage/upload**", lambda route: held.append(route))  # type: ignore[attr-defined]  # hangs
    asked: list[str] = []

    def answer(accept: bool) -> Callable[[object], None]:
        def handle(dialog: object) -> None:
            asked.append(dialog.message)  # type: ignore[attr-defined]
            dialog.accept() if accept else dialog.dismiss()  # type: ignore[attr-defined]

        return handle

    page.goto(f"{base_url}/upload")  # type: ignore[attr-defined]
    _choose_file_and_fill(page, "Slow upload", EQ12_PATH)
    page.get_by_role("button", name="Upload", exact=True).click()  # type: ignore[attr-defined]
    progress = page.get_by_test_id("dataset-upload-progress")  # type: ignore[attr-defined]
    sync_api.expect(progress).to_contain_text("Uploading")
    menu = page.get_by_test_id("stSidebar").get_by_role("link", name="Datasets")  # type: ignore[attr-defined]

    page.once("dialog", answer(False))  # type: ignore[attr-defined]
    menu.click()
    sync_api.expect(progress).to_contain_text("Uploading")  # stayed, and the upload goes on
    assert page.url.endswith("/upload"), page.url  # type: ignore[attr-defined]
    assert len(asked) == 1 and f"“{EQ12_PATH.name}” is still uploading" in asked[0], asked

    page.once("dialog", answer(True))  # type: ignore[attr-defined]
    menu.click()
    sync_api.expect(page.get_by_role("heading", name="Datasets")).to_be_visible()  # type: ignore[attr-defined]
    assert len(asked) == 2
    sync_api.expect(page.get_by_text("The upload of “Slow upload” stopped when you left")).to_be_visible()  # type: ignore[attr-defined]
    for route in held:
        route.abort()  # type: ignore[attr-defined]


def _api(base_url: str, method: str, path: str, body: object = None) -> dict[str, object]:
    request = urllib.request.Request(
        f"{base_url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def _create_dataset(base_url: str, name: str) -> str:
    """Create a dataset through the JSON API and never send its file: it stays `uploading`. Returns its id."""
    body = {"name": name, "fileName": "later.jsonl", "fileSize": 100, "format": "brightrun_lora_v4"}
    return str(_api(base_url, "POST", "/api/datasets", body)["dataset"]["id"])  # type: ignore[index]


def _upload_through_the_api(base_url: str, name: str, content: bytes) -> str:
    """Create, upload and confirm a dataset as an API client does; the sweep then validates it. Returns its id."""
    body = {"name": name, "fileName": "api.jsonl", "fileSize": len(content), "format": "brightrun_lora_v4"}
    created = _api(base_url, "POST", "/api/datasets", body)
    dataset_id = str(created["dataset"]["id"])  # type: ignore[index]
    upload_url = str(created["uploadUrl"])
    if upload_url.startswith("/"):
        upload_url = base_url + upload_url
    put = urllib.request.Request(
        upload_url,
        data=content,
        headers=dict(created["uploadHeaders"]),
        method=str(created["uploadMethod"]),  # type: ignore[arg-type]
    )
    with urllib.request.urlopen(put, timeout=30):
        pass
    _api(base_url, "POST", f"/api/datasets/{dataset_id}/confirm")
    return dataset_id


def test_the_notifications_page_shows_a_new_one_without_a_reload(page: object, base_url: str) -> None:
    """The sidebar's count and toast told of a new notification while the page's own list stayed as it was."""
    page.goto(f"{base_url}/notifications")  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_role("heading", name="Notifications")).to_be_visible()  # type: ignore[attr-defined]
    _upload_through_the_api(base_url, "Arrived while watching", EQ12_PATH.read_bytes())
    main = page.get_by_test_id("stMainBlockContainer")  # type: ignore[attr-defined]
    sync_api.expect(main.get_by_text("“Arrived while watching” is ready", exact=False)).to_be_visible(timeout=20_000)
    sync_api.expect(page.get_by_role("button", name="Mark all read")).to_be_enabled()  # type: ignore[attr-defined]


def test_delete_from_a_list_that_refreshes_itself(page: object, base_url: str) -> None:
    """While a dataset on the page is uploading or validating, the list redraws itself every few seconds (a
    fragment), and a click in it reruns only that fragment. Delete must still open its confirmation at once, on the
    list: it used to open only at the next full run of a page, over whichever dataset the user had gone to."""
    doomed = _create_dataset(base_url, "Live list doomed")
    _create_dataset(base_url, "Live list kept")
    page.goto(base_url)  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_text("Live list kept", exact=True)).to_be_visible()  # type: ignore[attr-defined]
    page.locator(f".st-key-delete-{doomed} button").click()  # type: ignore[attr-defined]
    dialog = page.get_by_role("dialog")  # type: ignore[attr-defined]
    sync_api.expect(dialog).to_contain_text("Live list doomed", timeout=5_000)
    dialog.get_by_role("button", name="Delete").click()
    sync_api.expect(page.get_by_text("Deleted “Live list doomed”.")).to_be_visible()  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_text("Live list doomed", exact=True)).to_have_count(0)  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_text("Live list kept", exact=True)).to_be_visible()  # type: ignore[attr-defined]
    # (A request left unanswered is dropped on another page: test_pages.py, within one session, which a page load
    # here would not keep.)


def test_download_works_at_the_address_the_user_opened(page: object, base_url: str) -> None:
    """The app is opened at localhost while LORA_PUBLIC_BASE_URL says 127.0.0.1 (see `base_url`): the download link
    must be on the page's own origin, as the upload's is, and give back the stored bytes."""
    page.goto(f"{base_url}/upload")  # type: ignore[attr-defined]
    _choose_file_and_fill(page, "Downloaded again", EQ12_PATH)
    page.get_by_role("button", name="Upload", exact=True).click()  # type: ignore[attr-defined]
    page.wait_for_url("**/dataset?id=*")  # type: ignore[attr-defined]
    sync_api.expect(page.get_by_text("Ready for training.")).to_be_visible()  # type: ignore[attr-defined]
    page.get_by_role("button", name="Download", exact=True).click()  # type: ignore[attr-defined]
    link = page.get_by_role("link", name="Save the file")  # type: ignore[attr-defined]
    href = link.get_attribute("href")
    assert href is not None and href.startswith("/api/storage/download?token="), href
    with page.expect_download() as download:  # type: ignore[attr-defined]
        link.click()
    saved = download.value.path()
    assert Path(saved).read_bytes() == EQ12_PATH.read_bytes()
    assert download.value.suggested_filename == EQ12_PATH.name
