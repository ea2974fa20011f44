"""The review workbench in a real browser: headless Debian Chromium driven by Selenium
(chromium-driver), against the real broker and a real worker fed with Banking77.

One worker (with ``REFINERY_API_TOKEN`` set, so the sign-in form is exercised) and one browser
serve the whole module; each test checks one behaviour through the pages, and reads what the
workbench produced back from the ``annotations`` topic.

With ``REFINERY_SCREENSHOTS=<dir>`` the screenshot test writes the dashboard, a label page and
the review queue there (docs/images holds the committed ones).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from agents.ingest.datasets import banking77
from schemas import Annotation, LabelAssignment
from tests.worker.test_worker_kafka import Worker, _free_port, _read_all

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        not (shutil.which("chromium") and shutil.which("chromedriver")),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]

TOKEN = "workbench-test-token"
REVIEWER = "Ann Reviewer"
MESSAGES = 600  # shuffled Banking77, every other one reviewed


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings(kafka_bootstrap, tmp_path_factory):
    import uuid

    from agents.kafka.admin import create_topics, delete_topics
    from agents.settings import Settings
    from tests.conftest import TEST_PARTITIONS

    s = dataclasses.replace(
        Settings.from_env(),
        external_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
        partitions=TEST_PARTITIONS,
    )
    create_topics(s)
    yield s
    try:
        delete_topics(s)
    except Exception:
        pass


@pytest.fixture(scope="module")
def pairs(datasets):
    """``MESSAGES`` shuffled Banking77 pairs; of the reviews (every other pair), those of the two
    most reviewed labels swap labels every other time: mislabels, which give those labels a
    low average precision and the check_label action the tests below open."""
    pairs = list(banking77())[:3000]
    random.Random(0).shuffle(pairs)
    pairs = pairs[:MESSAGES]
    counts = collections.Counter(review.labels[0].name for _, review in pairs[::2])
    (first, _), (second, _) = counts.most_common(2)
    swap, seen = {first: second, second: first}, collections.Counter()
    for i in range(0, len(pairs), 2):
        message, review = pairs[i]
        name = review.labels[0].name
        if name in swap:
            seen[name] += 1
            if seen[name] % 2 == 0:
                pairs[i] = (message, dataclasses.replace(review, labels=(LabelAssignment(swap[name]),)))
    return pairs


@pytest.fixture(scope="module")
def worker(settings, pairs, tmp_path_factory):
    """A worker fed ``MESSAGES`` Banking77 messages, half of them reviewed (mode shuffle)."""
    from kafka import KafkaProducer

    tmp = tmp_path_factory.mktemp("workbench")
    w = Worker(settings, tmp / "worker.log", REFINERY_API_TOKEN=TOKEN).start()
    try:
        w.wait_ready()
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5)
        for i, (message, review) in enumerate(pairs):
            key = message.dataset.encode()
            producer.send(settings.topic("messages"), key=key, value=message.encode())
            if i % 2 == 0:
                producer.send(
                    settings.topic("annotations"),
                    key=key,
                    value=dataclasses.replace(review, message=message, mode="shuffle").encode(),
                )
        producer.flush()
        producer.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                body = orjson.loads(w.get("/datasets/banking77/metrics", timeout=10)[1])
                if body["reviewed"] == MESSAGES // 2:
                    break
            except OSError:
                pass
            assert w.alive(), f"worker died; see {w.log_path}"
            time.sleep(0.5)
        else:
            raise AssertionError(f"the worker did not apply the reviews; see {w.log_path}")
        yield w
    finally:
        w.kill()


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--disable-gpu",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture(scope="module")
def browser():
    driver = _chromium()
    try:
        yield driver
    finally:
        driver.quit()


def _sign_in(browser, base: str, reviewer: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/datasets/banking77")
    assert "/login" in browser.current_url  # with a token set, pages ask for a sign-in
    browser.find_element(By.NAME, "reviewer").send_keys(reviewer)
    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    _until(browser, lambda: browser.current_url.endswith("/datasets/banking77"), "back on the dataset page")


@pytest.fixture(scope="module")
def signed_in(browser, worker):
    """The browser, signed in as `REVIEWER` with the API token; returns the worker's base URL."""
    base = f"http://127.0.0.1:{worker.port}"
    _sign_in(browser, base, REVIEWER)
    return base


# -- helpers -----------------------------------------------------------------------------------


def _until(driver, condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # the page is being replaced: ask again
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; page: {driver.current_url}")


def _reviews_by(settings, reviewer: str | None) -> list[Annotation]:
    """The reviews on the ``annotations`` topic by ``reviewer`` (None: by anyone)."""
    return [
        a
        for a in (Annotation.decode(v) for _, _, _, v in _read_all(settings, "annotations"))
        if reviewer is None or a.annotator == reviewer
    ]


def _wait_review(settings, message_id: str, timeout: float = 30.0) -> Annotation:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [a for a in _reviews_by(settings, REVIEWER) if a.message_id == message_id]
        if found:
            return found[-1]
        time.sleep(0.5)
    raise AssertionError(f"no review of {message_id} by {REVIEWER} on the annotations topic")


def _wait_labels_applied(settings, worker, timeout: float = 60.0) -> None:
    """Until every label named by a review on the ``annotations`` topic is in the worker's
    metrics: the reviews sent so far are applied (one adding a label, in flight, would reload the
    dashboard when it lands, and change its counts)."""
    named = {label.name for a in _reviews_by(settings, None) if a.dataset == "banking77" for label in a.labels}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        labels = orjson.loads(worker.get("/datasets/banking77/metrics", timeout=10)[1])["labels"]
        if named <= set(labels):
            return
        time.sleep(0.5)
    raise AssertionError(f"labels not applied: {sorted(named - set(labels))}; see {worker.log_path}")


def _message_id(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, "#review-form input[name=message_id]").get_attribute("value")


def _boxes(driver) -> dict:
    from selenium.webdriver.common.by import By

    return {box.get_attribute("value"): box for box in driver.find_elements(By.CSS_SELECTOR, "input[name=labels]")}


def _live_value(driver, key: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'[data-live="{key}"]').text


# -- the tests ---------------------------------------------------------------------------------


def test_screenshots_of_the_dashboard_a_label_page_and_the_review_queue(browser, signed_in, tmp_path):
    from selenium.webdriver.common.by import By

    out = Path(os.environ.get("REFINERY_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)

    def shoot(name: str) -> None:  # the page at 1280 px wide, at most 2,300 px of it
        import base64

        width, height = browser.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        shot = browser.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 2300), "scale": 1},
            },
        )
        path = out / name
        path.write_bytes(base64.b64decode(shot["data"]))
        assert path.stat().st_size > 10_000

    browser.get(f"{signed_in}/datasets/banking77")
    _until(browser, lambda: "live: updated" in browser.find_element(By.ID, "live-status").text, "a live update")
    shoot("dashboard.png")
    labels = browser.find_element(By.XPATH, "//table[.//th[.//text()='pinned']]")
    pinned_header = labels.find_element(By.XPATH, ".//th//button[text()='pinned']")
    pinned_header.click()
    pinned_header.click()  # sorted by pinned, most first
    column = [
        int(row.find_elements(By.TAG_NAME, "td")[7].text) for row in labels.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    assert column == sorted(column, reverse=True) and column[0] > column[-1]
    labels.find_element(By.CSS_SELECTOR, "tbody tr td a").click()  # the best-taught label's page
    _until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#chart-curve svg polyline"), "the curve")
    shoot("label.png")
    label = browser.find_element(By.TAG_NAME, "h1").text
    browser.get(f"{signed_in}/datasets/banking77/review?kind=teach_label&label={label}")
    _until(browser, lambda: "id=" in browser.current_url, "a teach-label message")
    shoot("review.png")
    browser.get(f"{signed_in}/")
    shoot("index.png")
    browser.get(f"{signed_in}/datasets/banking77/search?q=card+arrive")
    shoot("search.png")


def test_a_recommended_check_label_action_opens_the_check_label_queue(browser, signed_in):
    from selenium.webdriver.common.by import By

    browser.get(f"{signed_in}/datasets/banking77")
    for details in browser.find_elements(By.CSS_SELECTOR, "details"):
        browser.execute_script("arguments[0].open = true", details)  # folded actions too
    action = browser.find_element(By.CSS_SELECTOR, 'a.go[data-kind="check_label"]')
    label = action.find_element(By.XPATH, "./ancestor::tr/td[2]").text
    action.click()
    _until(browser, lambda: "id=" in browser.current_url, "the queue's first message")
    assert "kind=check_label" in browser.current_url
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(f"Check label: {label}")
    pinned = browser.find_element(By.CSS_SELECTOR, 'section[aria-label="pinned labels"]').text
    assert label in pinned  # a check-label message is one reviewed with the label
    assert _boxes(browser)[label].is_selected()


def test_changing_the_labels_and_submitting_sends_a_check_review_by_the_reviewer(browser, signed_in, settings):
    from selenium.webdriver.common.by import By

    browser.get(f"{signed_in}/datasets/banking77")
    for details in browser.find_elements(By.CSS_SELECTOR, "details"):
        browser.execute_script("arguments[0].open = true", details)
    browser.find_element(By.CSS_SELECTOR, 'a.go[data-kind="check_label"]').click()
    _until(browser, lambda: "id=" in browser.current_url, "the queue's first message")
    message_id = _message_id(browser)
    boxes = _boxes(browser)
    ticked = [name for name, box in boxes.items() if box.is_selected()]
    other = next(name for name in sorted(boxes) if name not in ticked)
    for name in ticked:
        boxes[name].click()  # untick the pinned label...
    boxes[other].click()  # ...tick another, and type a new one
    browser.find_element(By.NAME, "new_labels").send_keys("Workbench > Checked")
    browser.find_element(By.CSS_SELECTOR, "button[name=action][value=review]").click()

    _until(browser, lambda: "id=" in browser.current_url and _message_id(browser) != message_id, "the next message")
    assert f"Review of {message_id} sent" in browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    review = _wait_review(settings, message_id)
    assert review.mode == "check" and review.annotator == REVIEWER and review.action == "review"
    assert sorted(label.name for label in review.labels) == sorted([other, "Workbench > Checked"])
    assert review.dataset == "banking77" and review.message is not None and review.message.id == message_id


def test_reviewed_and_pinned_counts_rise_on_the_page_without_a_reload(browser, signed_in, settings, worker):
    from selenium.webdriver.common.by import By

    _wait_labels_applied(settings, worker)  # a review in flight would move the counts read below
    browser.get(f"{signed_in}/datasets/banking77")
    dashboard = browser.current_window_handle
    browser.execute_script("window.notReloaded = true")
    label = browser.find_element(By.CSS_SELECTOR, "table.sortable td a[href*='/label?name=']").text
    reviewed, pinned = int(_live_value(browser, "reviewed")), int(_live_value(browser, f"pinned:{label}"))

    browser.switch_to.new_window("tab")  # review an unreviewed message in another tab
    browser.get(f"{signed_in}/datasets/banking77/review?kind=shuffle")
    _until(browser, lambda: "id=" in browser.current_url, "a shuffle message")
    message_id = _message_id(browser)
    _boxes(browser)[label].click()
    browser.find_element(By.NAME, "new_labels").click()
    browser.find_element(By.NAME, "new_labels").send_keys("\ue009\ue007")  # Ctrl+Enter submits
    _wait_review(settings, message_id)
    browser.close()

    browser.switch_to.window(dashboard)
    _until(browser, lambda: int(_live_value(browser, "reviewed")) == reviewed + 1, "the reviewed count to rise", 60)
    _until(browser, lambda: int(_live_value(browser, f"pinned:{label}")) == pinned + 1, "the pinned count to rise", 60)
    assert browser.execute_script("return window.notReloaded") is True


def test_a_review_made_from_a_search_is_sent_with_mode_search(browser, signed_in, settings):
    from selenium.webdriver.common.by import By

    browser.get(f"{signed_in}/datasets/banking77/search")
    box = browser.find_element(By.NAME, "q")
    box.send_keys("card")
    box.submit()
    _until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "table.sortable tbody a"), "search hits")
    hit = browser.find_element(By.CSS_SELECTOR, "table.sortable tbody a")
    hit.click()
    _until(browser, lambda: "kind=search" in browser.current_url and "id=" in browser.current_url, "the hit's page")
    message_id = _message_id(browser)
    assert "card" in browser.find_element(By.CSS_SELECTOR, "article.message").text.lower()
    browser.find_element(By.ID, "accept").click()  # accept the predictions...
    browser.find_element(By.NAME, "new_labels").send_keys("Found by search")
    browser.find_element(By.CSS_SELECTOR, "button[name=action][value=review]").click()
    review = _wait_review(settings, message_id)
    assert review.mode == "search" and review.annotator == REVIEWER
    assert "Found by search" in {label.name for label in review.labels}


def test_keys_accept_the_predictions_and_skip_to_the_next_message(browser, signed_in):
    from selenium.webdriver.common.by import By

    browser.get(f"{signed_in}/datasets/banking77/review?kind=low_confidence")
    _until(browser, lambda: "id=" in browser.current_url, "a low-confidence message")
    message_id = _message_id(browser)
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("a")
    boxes = _boxes(browser)
    assert {name for name, box in boxes.items() if box.is_selected()} == {
        name for name, box in boxes.items() if box.get_attribute("data-predicted") is not None
    }
    body.send_keys("n")
    _until(browser, lambda: "id=" in browser.current_url and _message_id(browser) != message_id, "the next message")


def test_two_reviewers_on_one_queue_get_different_messages_and_a_shared_one_is_flagged(browser, signed_in):
    from selenium.webdriver.common.by import By

    browser.get(f"{signed_in}/datasets/banking77/review?kind=rebalance")
    _until(browser, lambda: "id=" in browser.current_url, "Ann's first rebalance message")
    anns = _message_id(browser)
    assert not browser.find_elements(By.ID, "lease-warning")
    bob = _chromium()
    try:
        _sign_in(bob, signed_in, "Bob")
        bob.get(f"{signed_in}/datasets/banking77/review?kind=rebalance")
        _until(bob, lambda: "id=" in bob.current_url, "Bob's first rebalance message")
        assert _message_id(bob) != anns and not bob.find_elements(By.ID, "lease-warning")
        bob.get(f"{signed_in}/datasets/banking77/review?kind=rebalance&id={anns}")  # the same one, by its address
        assert f"{REVIEWER} has this message open too" in bob.find_element(By.ID, "lease-warning").text
    finally:
        bob.quit()


def test_un_reviewing_a_message_sends_a_removal_by_the_reviewer(browser, signed_in, settings):
    from selenium.webdriver.common.by import By

    browser.get(f"{signed_in}/datasets/banking77/review?kind=missed_label")
    _until(browser, lambda: "id=" in browser.current_url, "a missed-label message")
    message_id = _message_id(browser)
    browser.find_element(By.CSS_SELECTOR, "button[name=action][value=remove]").click()
    _until(
        browser,
        lambda: (
            f"sent={message_id}" in browser.current_url
            or (
                browser.find_elements(By.CSS_SELECTOR, "[role=status]")
                and message_id in browser.find_element(By.CSS_SELECTOR, "[role=status]").text
            )
        ),
        "the queue to advance",
    )
    review = _wait_review(settings, message_id)
    assert review.action == "remove" and review.labels == () and review.mode == "missed"
    assert review.annotator == REVIEWER


def _serve(html: str) -> tuple[ThreadingHTTPServer, int]:
    """Another site: a local server answering every GET with ``html``."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    port = _free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


def test_a_cross_site_post_without_the_session_is_refused_and_sends_nothing(browser, signed_in, settings, pairs):
    from selenium.webdriver.common.by import By

    target = pairs[1][0].id  # an unreviewed message
    form = (
        f'<form id="f" method="post" action="{signed_in}/datasets/banking77/review">'
        f'<input name="message_id" value="{target}"><input name="kind" value="shuffle">'
        '<input name="action" value="review"><input name="labels" value="Forged"></form>'
        '<script>document.getElementById("f").submit()</script>'
    )
    server, port = _serve(form)
    try:
        # "localhost" is another site than "127.0.0.1": the SameSite=Strict cookie is not sent
        browser.get(f"http://localhost:{port}/")
        _until(browser, lambda: "/datasets/banking77/review" in browser.current_url, "the forged POST's answer")
        assert "Sign in first" in browser.find_element(By.TAG_NAME, "h1").text
        # the same site on another port gets the cookie, but not the form's CSRF token
        browser.get(f"http://127.0.0.1:{port}/")
        _until(browser, lambda: "/datasets/banking77/review" in browser.current_url, "the forged POST's answer")
        assert "Refused" in browser.find_element(By.TAG_NAME, "h1").text
    finally:
        server.shutdown()
    time.sleep(2)
    assert not [
        a
        for a in (Annotation.decode(v) for _, _, _, v in _read_all(settings, "annotations"))
        if a.message_id == target and any(label.name == "Forged" for label in a.labels)
    ]


def test_pages_allow_only_the_workers_own_script_and_no_framing(worker):
    import urllib.request

    for path in ("/", "/datasets/banking77", "/login"):
        request = urllib.request.Request(
            f"http://127.0.0.1:{worker.port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            policy = response.headers["Content-Security-Policy"]
            assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
            assert response.headers["X-Content-Type-Options"] == "nosniff"
