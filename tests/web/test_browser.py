"""The subscription pages in a real headless Chromium, against the real daemon.

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them), driven by
Selenium with the driver's path set, so nothing is downloaded. The daemon runs as a
subprocess (``syndicator run``) mailing through a real SMTP server (aiosmtpd); the test
subscribes through the form (partly by keyboard alone), reads the confirmation mail,
confirms, receives the next matching article, changes its filters and unsubscribes.
Every page (and the form showing a mistake) is captured at desktop (1280 px) and phone
(360 px) width into ``test-artifacts/screenshots/``, and must not scroll sideways on the
phone.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from syndicator.config import load_config
from syndicator.mail import roster
from syndicator.state.db import State
from tests.conftest import ROOT, SAMPLE_STORE, write
from tests.smtp_sink import Received, Sink, free_port

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
WIDTHS = {"desktop": (1280, False), "phone": (360, True)}
LINK = re.compile(r"http://127\.0\.0\.1:\d+/(confirm|manage)/[0-9A-Za-z._-]+")
ADDRESS = "reader@example.org"
_T = TypeVar("_T")


def _browser_or_skip() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).is_file()]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests: {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    _browser_or_skip()
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(what: str, probe: Callable[[], _T | None], timeout: float = 30) -> _T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def daemon(install: Path) -> Iterator[tuple[str, Path, Sink]]:
    """``syndicator run`` with the example store, mailing to a sink: (base URL, config, sink)."""
    with Sink() as sink:
        port = free_port()
        base = f"http://127.0.0.1:{port}/"
        text = install.read_text().replace("https://news.example.org/", base)
        text = text.replace("[mail]\n", '[mail]\ntransport = "smtp"\n')
        text += f'\n[mail.smtp]\nhost = "127.0.0.1"\nport = {sink.port}\ntimeout = 5\n'
        text += f'\n[http]\nlisten = "127.0.0.1:{port}"\n'
        install.write_text(text)
        (install.parent.parent / "articles" / "sample.txt").write_bytes(SAMPLE_STORE.read_bytes())
        log = install.parent.parent / "daemon.log"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "syndicator", "--config", str(install), "run"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            wait_for("the daemon", lambda: http_ok(base + "healthz"))
            yield base, install, sink
        finally:
            process.terminate()
            process.wait(timeout=30)
            sys.stderr.write(log.read_text()[-4000:])


def screenshots(driver: WebDriver, name: str) -> dict[str, int]:
    """The whole page at each width into ``SCREENSHOTS``; no sideways scrolling on a phone.

    Returns the page's height at each width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    heights: dict[str, int] = {}
    for label, (width, mobile) in WIDTHS.items():
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": mobile},
        )
        scroll_width = driver.execute_script("return document.documentElement.scrollWidth")
        assert scroll_width <= width, f"{name} scrolls sideways at {width}px ({scroll_width}px)"
        height = driver.execute_script("return document.documentElement.scrollHeight")
        heights[label] = height
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        (SCREENSHOTS / f"{name}-{label}.png").write_bytes(base64.b64decode(shot["data"]))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return heights


def shown(driver: WebDriver, selector: str) -> bool:
    return bool(driver.find_element(By.CSS_SELECTOR, selector).is_displayed())


def mail_to(sink: Sink, email: str, count: int) -> list[Received]:
    return wait_for(
        f"{count} mail(s) to {email}",
        lambda: (
            (found := [r for r in sink.received if r.recipients == [email]])[count - 1 :] and found
        ),
    )


def link_in(received: Received, kind: str) -> str:
    text_part = received.message.get_body(("plain",))
    assert text_part is not None
    return next(m.group(0) for m in LINK.finditer(text_part.get_content()) if m.group(1) == kind)


def focused(driver: WebDriver) -> dict[str, Any]:
    result: dict[str, Any] = driver.execute_script(
        "const e = document.activeElement, s = getComputedStyle(e);"
        "return {id: e.id, outline: s.outlineStyle, width: s.outlineWidth};"
    )
    return result


def record_of(config_path: Path, email: str) -> roster.SubscriberRecord | None:
    state = State.open(load_config(config_path).state.url)
    try:
        with state.engine.connect() as conn:
            return roster.find_subscriber(conn, email)
    finally:
        state.close()


def test_subscribe_confirm_receive_manage_and_leave_in_a_browser(
    browser: WebDriver, daemon: tuple[str, Path, Sink]
) -> None:
    base, config_path, sink = daemon
    driver = browser

    # The index page leads to the form.
    driver.get(base)
    driver.find_element(By.LINK_TEXT, "Get the news by email").click()
    assert driver.current_url == base + "subscribe"
    assert driver.find_element(By.TAG_NAME, "h1").text == "Subscribe by email"
    assert "How your choices combine" in driver.page_source
    heights = screenshots(driver, "1-subscribe")
    # Topics fold into groups: at 360 px the form is about 2,300 px tall (it was ~2,900).
    assert heights["phone"] < 2400, heights
    sys.stderr.write(f"subscribe form height: {heights}\n")

    # By keyboard alone: Tab to the address, type it, Tab to the first region, Space.
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert focused(driver)["id"] == ""  # the site link in the header comes first
    driver.switch_to.active_element.send_keys(Keys.TAB)
    assert focused(driver)["id"] == "email"
    driver.switch_to.active_element.send_keys(ADDRESS, Keys.TAB)
    state = focused(driver)
    assert state["id"] == "region-americas"
    assert state["outline"] == "solid" and state["width"] == "3px"  # a visible focus ring
    driver.switch_to.active_element.send_keys(Keys.SPACE)
    assert driver.find_element(By.ID, "region-americas").is_selected()
    # The default is a daily digest: hour and zone shown, the day of the week not.
    assert shown(driver, "#hour") and shown(driver, "#timezone")
    assert not shown(driver, "#weekday")
    driver.find_element(By.CSS_SELECTOR, "label[for=cadence-weekly]").click()
    assert shown(driver, "#weekday") and shown(driver, "#hour")
    driver.find_element(By.CSS_SELECTOR, "label[for=cadence-immediate]").click()
    # "As articles are published": no digest fields at all (CSS only, no script).
    assert not shown(driver, "#hour") and not shown(driver, "#timezone")
    assert not shown(driver, "#weekday")
    assert driver.execute_script("return document.scripts.length") == 0
    # A topic group opens to show its topics.
    assert not shown(driver, "#topic-transit")
    driver.find_element(By.XPATH, "//summary[starts-with(., 'Procedures')]").click()
    assert shown(driver, "#topic-transit")
    screenshots(driver, "1-subscribe-immediate-open-group")
    keywords = driver.find_element(By.ID, "keywords")
    keywords.send_keys("green lane", Keys.ENTER)  # Enter submits the form

    wait_for("the answer page", lambda: driver.current_url.endswith("/subscribe/sent"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Check your mail"
    screenshots(driver, "2-check-your-mail")

    (confirmation,) = mail_to(sink, ADDRESS, 1)
    assert confirmation.message["Subject"] == "Confirm your subscription to WCO News"
    driver.get(link_in(confirmation, "confirm"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Confirm your subscription"
    assert "Region Americas and Caribbean; keyword 'green lane'" in driver.page_source
    screenshots(driver, "3-confirm")
    assert record_of(config_path, ADDRESS) is None  # opening the link confirmed nothing

    confirm_url = driver.current_url
    driver.find_element(By.XPATH, "//button[text()='Confirm subscription']").click()
    wait_for("the confirmation", lambda: "You are subscribed" in driver.page_source)
    # Reached by a redirect after the POST: reloading it posts nothing again.
    assert driver.current_url == confirm_url + "?done=subscribed"
    assert "as each new article that matches your choice is published" in driver.page_source
    screenshots(driver, "4-confirmed")
    record = record_of(config_path, ADDRESS)
    assert record is not None and (record.status, record.source) == ("active", "web")

    # The next matching article arrives (the daemon cycles every second).
    write(
        config_path.parent.parent / "articles" / "chile.txt",
        "Chile Opens a Green Lane for Exporters\n\nChile Opens a Green Lane for Exporters\n\n"
        "Chile's customs service opened a green lane for trusted exporters.\n",
    )
    news = mail_to(sink, ADDRESS, 2)[1]
    assert news.message["Subject"] == "Chile Opens a Green Lane for Exporters"

    # Change filters on the manage page linked from that mail.
    driver.get(link_in(news, "manage"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Your subscription"
    screenshots(driver, "5-manage")
    driver.find_element(By.CSS_SELECTOR, "label[for=region-americas]").click()
    driver.find_element(By.CSS_SELECTOR, "label[for=region-europe]").click()
    driver.find_element(By.CSS_SELECTOR, "label[for=cadence-weekly]").click()
    driver.find_element(By.XPATH, "//button[text()='Save changes']").click()
    wait_for("the saved notice", lambda: "Your changes are saved." in driver.page_source)
    assert driver.find_element(By.ID, "region-europe").is_selected()
    assert not driver.find_element(By.ID, "region-americas").is_selected()
    record = record_of(config_path, ADDRESS)
    assert record is not None and (record.regions, record.cadence) == (("europe",), "weekly")

    driver.find_element(By.XPATH, "//button[text()='Unsubscribe']").click()
    wait_for("the unsubscribe answer", lambda: "You are unsubscribed" in driver.page_source)
    screenshots(driver, "6-unsubscribed")
    record = record_of(config_path, ADDRESS)
    assert record is not None and record.status == "unsubscribed"

    # A mistake is named next to its field and in a summary at the top.
    driver.get(base + "subscribe")
    driver.find_element(By.ID, "email").send_keys("reader at example.org", Keys.ENTER)
    wait_for("the error summary", lambda: driver.find_elements(By.CLASS_NAME, "errors"))
    summary = driver.find_element(By.CLASS_NAME, "errors").text
    assert "Email address: 'reader at example.org' is not an email address" in summary
    assert driver.find_element(By.ID, "email").get_attribute("aria-invalid") == "true"
    screenshots(driver, "7-subscribe-error")
    # Every problem at once: the address and the keywords.
    driver.get(base + "subscribe")
    driver.find_element(By.ID, "keywords").send_keys(",".join(f"k{n}" for n in range(25)))
    driver.find_element(By.ID, "email").send_keys("reader(1)@example.org", Keys.ENTER)
    wait_for("the error summary", lambda: driver.find_elements(By.CLASS_NAME, "errors"))
    items = [item.text for item in driver.find_elements(By.CSS_SELECTOR, ".errors li")]
    assert [item.split(":")[0] for item in items] == ["Email address", "Keywords"]
    screenshots(driver, "8-subscribe-errors")

    # The old confirmation link, after unsubscribing, says the subscription has ended.
    driver.get(confirm_url)
    assert driver.find_element(By.TAG_NAME, "h1").text == "This subscription has ended"
    screenshots(driver, "9-ended")

    # The one-click unsubscribe page of the news mail has the look of the others.
    unsubscribe = re.search(r"<(http://[^>]+/unsubscribe/[^>]+)>", news.message["List-Unsubscribe"])
    assert unsubscribe is not None
    driver.get(unsubscribe.group(1))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Unsubscribe"
    assert driver.find_element(By.TAG_NAME, "header").text == "WCO News"
    screenshots(driver, "9-one-click-unsubscribe")
    shots = sorted(path.name for path in SCREENSHOTS.glob("[1-9]-*.png"))
    assert len(shots) == 22
