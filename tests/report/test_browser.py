"""Acceptance 4: the contact sheet in real headless Chromium (Debian ``chromium`` + ``chromium-driver``, installed
by ``make browser``): no console errors, one pair element per face, sorting and filtering work, 10,000 faces open.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tests.report.conftest import FLAG_BELOW
from tests.report.test_html import synthetic_records

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("headless Chromium is missing: run `make browser` (Debian packages chromium, chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[dev]'")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--window-size=1280,900"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(driver, page: Path) -> float:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop what an earlier page left
    t0 = time.perf_counter()
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.getElementById('shown').textContent !== ''"))
    return time.perf_counter() - t0


def _pairs(driver) -> int:
    return int(driver.execute_script("return document.querySelectorAll('#sheet figure.pair').length"))


def _errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _click(driver, element_id: str) -> None:
    driver.find_element("id", element_id).click()


def test_solvay_sheet_in_chromium(browser, solvay_report, tmp_path):
    import cv2
    from selenium.webdriver.support.ui import Select

    from tests.conftest import read_jsonl

    _open(browser, solvay_report / "report.html")
    assert _pairs(browser) == 29
    # Every visible thumbnail really loaded (lazy ones below the fold load as they scroll in).
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    time.sleep(0.5)
    loaded = browser.execute_script("return Array.from(document.images).filter(i => i.complete && i.naturalWidth === 128).length")
    assert loaded == 58
    shot = tmp_path / "solvay.png"
    browser.execute_script("window.scrollTo(0, 0)")
    png = browser.get_screenshot_as_png()
    shot.write_bytes(png)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[0] > 500 and img.shape[1] > 1000 and float(img.std()) > 20  # not a blank page

    recs = read_jsonl(solvay_report / "report.jsonl")
    cos = sorted(r["identity"]["cosine"] for r in recs)
    n_flagged = sum(r["identity"]["cosine"] < FLAG_BELOW for r in recs)
    assert 0 < n_flagged < 29
    shown = browser.execute_script("return Array.from(document.querySelectorAll('#sheet .pair')).map(p => Number(p.dataset.cosine))")
    assert shown == cos  # default order: lowest cosine first
    Select(browser.find_element("id", "sort")).select_by_value("cos-desc")
    assert browser.execute_script("return Number(document.querySelector('#sheet .pair').dataset.cosine)") == cos[-1]
    _click(browser, "flagged")
    assert _pairs(browser) == n_flagged == int(browser.execute_script("return document.querySelectorAll('#sheet .pair.flagged').length"))
    _click(browser, "flagged")
    browser.find_element("id", "maxcos").send_keys(str(cos[5]))
    assert _pairs(browser) == sum(c < cos[5] for c in cos)
    link = browser.find_element("css selector", "#sheet .pair a.file").get_attribute("href")
    assert link == (solvay_report / "Solvay_conference_1927.png").resolve().as_uri()
    assert _errors(browser) == []


def test_ten_thousand_faces_in_chromium(browser, solvay_report, tmp_path):
    from facerest_cli.report.html import HTML_NAME, render_html

    (tmp_path / "report_thumbs").mkdir()
    thumbs = sorted((solvay_report / "report_thumbs").iterdir())[:2]
    for t, name in zip(thumbs, ("a_in.jpg", "a_out.jpg")):
        shutil.copy(t, tmp_path / "report_thumbs" / name)
    recs = synthetic_records(10_000, {"input": "report_thumbs/a_in.jpg", "restored": "report_thumbs/a_out.jpg"})
    (tmp_path / HTML_NAME).write_text(render_html(recs, "/archive/out"), encoding="utf-8")
    dt = _open(browser, tmp_path / HTML_NAME)
    assert _pairs(browser) == 240  # drawn a page at a time
    assert browser.find_element("id", "stats").text.startswith("10000 faces in 500 files")
    assert dt < 20.0, f"opening 10,000 faces took {dt:.1f} s"  # measured ~1 s
    browser.execute_script("document.getElementById('more').click()")
    assert _pairs(browser) == 480
    _click(browser, "flagged")
    flagged = sum(1 for r in recs if r["identity"]["flag"])
    assert browser.find_element("id", "shown").text == f"showing 240 of {flagged} (filtered from 10000)"
    shown = browser.execute_script("return Array.from(document.querySelectorAll('#sheet .pair')).map(p => Number(p.dataset.cosine))")
    assert shown == sorted(r["identity"]["cosine"] for r in recs if r["identity"]["flag"])[:240]
    assert np.all(np.diff(shown) >= 0)
    assert _errors(browser) == []
