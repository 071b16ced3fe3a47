"""The playground page and the offline docs in real headless Chromium, on a real server.

Every test runs with the outside world cut off (``conftest.Session``): a request for any other
host or port is aborted and fails the test, as do console errors and uncaught page errors.
Digits are drawn with real mouse strokes (and a real finger, through Chromium's touch input),
reviews typed, files chosen through the page's own file input.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import PHONE, Session, screenshot_dir
from tests.support.drawn_digits import STROKES, draw, png
from tests.support.server import ROOT, start_server, stop_server

pytestmark = pytest.mark.browser

POSITIVE = "A wonderful, moving film. The acting is superb and the story is beautiful."
NEGATIVE = "Awful. A boring plot, terrible acting and a complete waste of time."
# Where a digit goes on the pad, as fractions of it (left, top, right, bottom).
PAD_BOX = (0.25, 0.12, 0.75, 0.88)


def open_page(session: Session) -> None:
    session.page.goto(session.base + "/")
    session.page.get_by_text(re.compile(r"Serving .*digits v2")).wait_for()


def wait_idle(session: Session, testid: str) -> None:
    session.page.wait_for_function(
        "id => document.querySelector(`[data-testid=${id}]`).dataset.state === 'idle'", arg=testid
    )


def pad_points(session: Session, stroke: list[tuple[float, float]]) -> list[tuple[float, float]]:
    box = session.page.get_by_label("Digit drawing pad").bounding_box()
    assert box is not None
    left, top, right, bottom = PAD_BOX
    return [
        (
            box["x"] + (left + x * (right - left)) * box["width"],
            box["y"] + (top + y * (bottom - top)) * box["height"],
        )
        for x, y in stroke
    ]


def draw_with_mouse(session: Session, digit: int) -> None:
    draw_strokes(session, STROKES[digit])


def draw_strokes(session: Session, strokes: list[list[tuple[float, float]]]) -> None:
    mouse = session.page.mouse
    for stroke in strokes:
        points = pad_points(session, stroke)
        mouse.move(*points[0])
        mouse.down()
        for point in points[1:]:
            mouse.move(*point, steps=4)
        mouse.up()


def draw_with_finger(session: Session, digit: int) -> None:
    """Chromium's own touch input (CDP Input.dispatchTouchEvent): what a phone's finger sends."""
    cdp = session.context.new_cdp_session(session.page)
    for stroke in STROKES[digit]:
        points = pad_points(session, stroke)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [xy(points[0])]})
        for point in points[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [xy(point)]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def xy(point: tuple[float, float]) -> dict[str, float]:
    return {"x": point[0], "y": point[1]}


def read_digit(session: Session) -> int:
    wait_idle(session, "digit-result")
    result = session.page.get_by_test_id("digit-result")
    text = result.inner_text()
    match = re.search(r"as (\d) \(", text)
    assert match, text
    assert result.get_attribute("data-digit") == match.group(1)
    assert len(result.locator("li").all()) == 10  # the ten probabilities
    return int(match.group(1))


def test_page_shows_the_models_and_nothing_leaves_the_server(session_for, server: str) -> None:
    session = session_for(server)
    open_page(session)
    assert session.page.title().startswith("Playground")
    assert "sentiment v2" in session.page.locator("#models").inner_text()
    assert session.page.locator("#api-key").is_hidden()  # no API_KEYS on this server
    assert any(r.url.endswith("/v1/models") for r in session.requests)
    session.check()


@pytest.mark.parametrize("digit", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
def test_a_digit_drawn_with_the_mouse_is_read_right(session_for, server: str, digit: int) -> None:
    session = session_for(server)
    open_page(session)
    draw_with_mouse(session, digit)
    assert read_digit(session) == digit
    assert session.page.get_by_test_id("digit-result").get_attribute("data-confidence") == "high"
    session.page.get_by_role("button", name="Clear").click()
    assert "Nothing read yet" in session.page.get_by_test_id("digit-result").inner_text()
    session.check()


def test_predict_digit_button_and_an_empty_pad(session_for, server: str) -> None:
    session = session_for(server)
    open_page(session)
    session.page.get_by_role("button", name="Predict digit").click()
    assert "pad is empty" in session.page.locator("#digit-error").inner_text()
    draw_with_mouse(session, 7)
    read_digit(session)
    session.page.get_by_role("button", name="Predict digit").click()
    assert read_digit(session) == 7
    assert session.page.locator("#digit-error").is_hidden()
    session.check()


# ---- what the page says of an answer (thresholds: tests/api/test_confidence.py) ---------------

# A zigzag across the pad: not a digit, and read as one with a low probability.
SCRIBBLE = [[(0.05 + i * 0.09, 0.1 + 0.8 * (i % 2)) for i in range(11)]]
MIXED = "Not bad, not great either."  # scored 0.49 by version 2: it leans negative


def digit_requests(session: Session) -> list[object]:
    return [r for r in session.requests if r.url.endswith("/v1/digits/predict")]


def test_a_nearly_empty_pad_is_refused_in_the_page(session_for, server: str) -> None:
    """A dot is no digit: the page says so and asks the model nothing (it read a dot as a 0,
    99.2% sure)."""
    session = session_for(server)
    open_page(session)
    box = session.page.get_by_label("Digit drawing pad").bounding_box()
    assert box is not None
    session.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    result = session.page.get_by_test_id("digit-result")
    result.and_(session.page.locator("[data-refused=nearly-empty]")).wait_for()
    assert "Draw a digit first" in result.inner_text()
    session.page.get_by_role("button", name="Predict digit").click()
    assert "Draw a digit first" in result.inner_text()
    assert result.get_attribute("data-digit") is None
    assert digit_requests(session) == []
    session.check()


def test_a_scribble_is_shown_as_a_guess(session_for, server: str) -> None:
    session = session_for(server)
    open_page(session)
    draw_strokes(session, SCRIBBLE)
    wait_idle(session, "digit-result")
    result = session.page.get_by_test_id("digit-result")
    assert result.get_attribute("data-confidence") == "low"
    assert re.search(
        r"Not sure: the model's best guess for the drawing is \d, at only", result.inner_text()
    )
    assert digit_requests(session)
    session.check()


def test_a_clear_digit_is_read_as_sure(session_for, server: str) -> None:
    session = session_for(server)
    open_page(session)
    draw_with_mouse(session, 4)
    assert read_digit(session) == 4
    result = session.page.get_by_test_id("digit-result")
    assert result.get_attribute("data-confidence") == "high"
    assert "Not sure" not in result.inner_text()
    session.check()


def test_a_review_near_the_middle_reads_as_mixed(session_for, server: str) -> None:
    session = session_for(server)
    open_page(session)
    session.page.get_by_label("Review", exact=True).fill(MIXED)
    session.page.get_by_role("button", name="Predict sentiment").click()
    wait_idle(session, "sentiment-result")
    result = session.page.get_by_test_id("sentiment-result")
    assert re.search(
        r"finds this review mixed: it leans negative, but not clearly \(score 0\.\d+",
        result.inner_text(),
    )
    assert result.get_attribute("data-verdict") == "mixed"
    assert result.get_attribute("data-label") == "negative"  # the API's label, unchanged
    session.check()


# ---- a model that is not served ----------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server whose MODEL_DIR holds the digits model alone."""
    root = tmp_path_factory.mktemp("digits-only") / "models"
    shutil.copytree(ROOT / "models" / "digits", root / "digits")
    proc, url = start_server({"MODEL_DIR": str(root)})
    yield url
    stop_server(proc)


def test_a_model_the_server_lacks_greys_its_panel_out(session_for, digits_only: str) -> None:
    """A server of the digits model alone: the sentiment panel is off and says why; the digits
    panel works."""
    session = session_for(digits_only)
    open_page(session)
    panel = session.page.locator("#sentiment-panel")
    assert panel.get_attribute("data-served") == "false"
    assert panel.get_attribute("aria-disabled") == "true"
    assert "does not serve a model named sentiment" in panel.get_by_role("status").inner_text()
    assert session.page.get_by_label("Review", exact=True).is_disabled()
    assert session.page.get_by_role("button", name="Predict sentiment").is_disabled()
    assert session.page.locator("#digits-panel").get_attribute("data-served") == "true"
    draw_with_mouse(session, 7)
    assert read_digit(session) == 7
    session.check()


def test_a_404_from_a_model_s_route_greys_its_panel_out(session_for, server: str) -> None:
    """The model went away after the page loaded: its route answers 404 (intercepted here)."""
    session = session_for(server)
    message = "model 'digits' is not served (served: sentiment)"
    session.page.route(
        "**/v1/digits/predict",
        lambda route: route.fulfill(
            status=404, json={"error": {"code": "not_found", "message": message}}
        ),
    )
    open_page(session)
    draw_with_mouse(session, 7)
    panel = session.page.locator("#digits-panel")
    panel.and_(session.page.locator("[data-served=false]")).wait_for()
    assert message in panel.get_by_role("status").inner_text()
    assert session.page.get_by_role("button", name="Predict digit").is_disabled()
    assert session.page.locator("#digit-error").is_hidden()
    assert session.page.locator("#sentiment-panel").get_attribute("data-served") == "true"
    session.check(allowed_console=("status of 404",))


@pytest.mark.parametrize(("review", "label"), [(POSITIVE, "positive"), (NEGATIVE, "negative")])
def test_a_typed_review_is_read_right(session_for, server: str, review: str, label: str) -> None:
    session = session_for(server)
    open_page(session)
    session.page.get_by_label("Review", exact=True).fill(review)
    session.page.get_by_role("button", name="Predict sentiment").click()
    wait_idle(session, "sentiment-result")
    result = session.page.get_by_test_id("sentiment-result")
    assert re.search(rf"finds this review {label} \(score 0\.\d+", result.inner_text())
    assert result.get_attribute("data-label") == label
    session.check()


def test_a_review_is_read_as_it_is_typed(session_for, server: str) -> None:
    session = session_for(server)
    open_page(session)
    session.page.get_by_label("Review", exact=True).press_sequentially(NEGATIVE, delay=5)
    result = session.page.get_by_test_id("sentiment-result")
    result.and_(session.page.locator("[data-label=negative][data-state=idle]")).wait_for()
    assert "negative" in result.inner_text()
    session.check()


def test_an_uploaded_image_is_read(session_for, server: str, tmp_path: Path) -> None:
    session = session_for(server)
    open_page(session)
    picture = tmp_path / "three.png"
    picture.write_bytes(png(draw(3, (200, 240), pen=16)))
    session.page.get_by_label("Upload an image of a digit").set_input_files(picture)
    assert read_digit(session) == 3
    assert "three.png" in session.page.get_by_test_id("digit-result").inner_text()
    assert session.page.locator("#upload-preview").is_visible()
    session.check()


def test_a_dropped_image_is_read(session_for, server: str) -> None:
    session = session_for(server)
    open_page(session)
    data = list(png(draw(4, (120, 120), pen=10)))
    session.page.evaluate(
        """bytes => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "four.png", {type: "image/png"}));
            document.getElementById("drop").dispatchEvent(
                new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        data,
    )
    assert read_digit(session) == 4
    session.check()


def upload_refused(session: Session, file: Path) -> str:
    """Choose ``file`` in the page's upload box; the error the page shows for it, in words."""
    open_page(session)
    session.page.get_by_label("Upload an image of a digit").set_input_files(file)
    error = session.page.get_by_role("alert").filter(has_text=file.name)
    error.wait_for()
    assert session.page.get_by_role("heading", name="Digits").is_visible()  # no blank page
    return str(error.inner_text())


def test_a_file_that_is_not_an_image_gets_an_error_in_words(
    session_for, server: str, tmp_path: Path
) -> None:
    """Told in the page, without a request the service would refuse (nor its console line)."""
    session = session_for(server)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture of anything\n")
    message = upload_refused(session, notes)
    assert re.search(r"notes\.txt is not an image the service reads: choose a PNG", message)
    assert not [r for r in session.requests if r.url.endswith("/v1/digits/predict")]
    session.check()


def test_the_service_s_refusal_of_a_broken_image_is_shown_in_words(
    session_for, server: str, tmp_path: Path
) -> None:
    session = session_for(server)
    broken = tmp_path / "broken.png"
    broken.write_bytes(png(draw(3, (28, 28), pen=3))[:40])  # a PNG's start, cut off
    message = upload_refused(session, broken)
    assert re.search(r"refused this \(400 invalid_input\): broken\.png: ", message)
    # The only console error is Chromium's own line for the 400 response.
    session.check(allowed_console=("status of 400",))


def test_an_answer_for_a_cleared_drawing_is_not_shown(session_for, server: str) -> None:
    """Clear while the drawing's prediction is on its way: the late answer is dropped."""
    session = session_for(server)
    open_page(session)
    held: list[object] = []
    release = False

    def hold(route) -> None:
        if release:
            route.continue_()
        else:
            held.append(route)

    session.page.route("**/v1/digits/predict", hold)
    draw_with_mouse(session, 7)
    deadline = time.monotonic() + 20
    while not held:  # the handler runs while playwright waits
        assert time.monotonic() < deadline, "the drawing was never sent"
        session.page.wait_for_timeout(20)
    session.page.get_by_role("button", name="Clear").click()
    release = True
    for route in held:
        route.continue_()
    wait_idle(session, "digit-result")
    result = session.page.get_by_test_id("digit-result")
    assert "Nothing read yet" in result.inner_text()
    assert result.get_attribute("data-digit") is None
    session.check()


def test_emptying_the_review_box_clears_the_verdict(session_for, server: str) -> None:
    session = session_for(server)
    open_page(session)
    box = session.page.get_by_label("Review", exact=True)
    box.fill(POSITIVE)
    session.page.get_by_role("button", name="Predict sentiment").click()
    wait_idle(session, "sentiment-result")
    result = session.page.get_by_test_id("sentiment-result")
    assert result.get_attribute("data-label") == "positive"
    box.fill("")
    assert "Nothing read yet" in result.inner_text()
    assert result.get_attribute("data-label") is None
    session.check()


def test_the_page_works_from_the_keyboard(session_for, server: str) -> None:
    session = session_for(server)
    open_page(session)
    page = session.page
    for _ in range(30):  # Tab until the review box has the focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "review":
            break
    else:
        pytest.fail("Tab never reached the review box")
    page.keyboard.type(POSITIVE)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Predict sentiment"
    page.keyboard.press("Enter")
    wait_idle(session, "sentiment-result")
    assert "positive" in page.get_by_test_id("sentiment-result").inner_text()
    session.check()


def test_a_digit_drawn_with_a_finger_on_a_phone_is_read(
    session_for, server: str, tmp_path: Path
) -> None:
    session = session_for(server, **PHONE)
    open_page(session)
    page = session.page
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    draw_with_finger(session, 2)
    assert read_digit(session) == 2
    page.get_by_label("Review", exact=True).fill(POSITIVE)
    page.get_by_role("button", name="Predict sentiment").click()
    wait_idle(session, "sentiment-result")
    page.screenshot(
        path=screenshot_dir(tmp_path) / "playground-phone.png", full_page=True, scale="css"
    )
    session.check()


def test_desktop_screenshot(session_for, server: str, tmp_path: Path) -> None:
    session = session_for(server)
    open_page(session)
    draw_with_mouse(session, 7)
    assert read_digit(session) == 7
    session.page.get_by_label("Review", exact=True).fill(POSITIVE)
    session.page.get_by_role("button", name="Predict sentiment").click()
    wait_idle(session, "sentiment-result")
    session.page.screenshot(
        path=screenshot_dir(tmp_path) / "playground-desktop.png", full_page=True
    )
    session.check()


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_api_docs_work_offline(session_for, server: str, path: str) -> None:
    session = session_for(server)
    session.page.goto(session.base + path)
    # Rendered from /openapi.json by the JavaScript the service serves: the predict routes show.
    session.page.get_by_text("/v1/digits/predict").first.wait_for()
    assert session.page.get_by_text("Digits in uploaded images").first.is_visible()
    session.page.wait_for_load_state("networkidle")  # the logo, fonts, whatever comes late
    local = [r.url for r in session.requests if "/docs/assets/" in r.url]
    assert local, "the page loaded no asset from /docs/assets/"
    session.check()


def test_the_block_catches_a_request_for_another_host(session_for, server: str) -> None:
    """The check every test makes can fail: a request for another host is caught. (On /docs:
    on the playground page the Content-Security-Policy stops it before it is even sent.)"""
    session = session_for(server)
    session.page.goto(session.base + "/docs")
    session.page.evaluate("fetch('http://192.0.2.1/x').catch(() => null)")
    assert session.blocked == ["http://192.0.2.1/x"]


def test_the_page_policy_refuses_other_hosts(session_for, server: str) -> None:
    session = session_for(server)
    open_page(session)
    refused = session.page.evaluate(
        "fetch('http://192.0.2.1/x').then(() => 'sent', error => error.name)"
    )
    assert refused == "TypeError"
    assert session.blocked == []  # refused by the page itself: never reached the network
    assert any("Content Security Policy" in m for m in session.console_errors)


# ---- a server with API keys ------------------------------------------------------------------

KEY = "playground-test-key"


@pytest.fixture(scope="module")
def locked_server() -> object:
    proc, url = start_server({"API_KEYS": KEY})
    yield url
    stop_server(proc)


def test_with_api_keys_the_page_asks_for_one_and_keeps_it_in_memory(
    session_for, locked_server: str
) -> None:
    session = session_for(locked_server)
    page = session.page
    page.goto(locked_server + "/")
    page.get_by_label("API key").wait_for()
    assert "needs a valid API key (401" in page.locator("#models").inner_text()
    draw_with_mouse(session, 1)
    wait_idle(session, "digit-result")
    assert "401" in page.locator("#digit-error").inner_text()

    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Use key").click()
    page.get_by_text(re.compile(r"Serving .*digits v2")).wait_for()
    page.get_by_role("button", name="Predict digit").click()
    assert read_digit(session) == 1
    sent = [r for r in session.requests if r.url.endswith("/v1/digits/predict")]
    assert sent[-1].headers.get("authorization") == f"Bearer {KEY}"
    stored = page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
    assert stored == [0, 0, ""]
    assert httpx.get(locked_server + "/v1/models").status_code == 401  # the key was needed
    session.check(allowed_console=("status of 401",))
