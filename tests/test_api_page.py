"""The demo page in a real headless browser (Debian chromium + chromedriver), dev weights."""

from __future__ import annotations

import json

import httpx
import pytest
from apiserver import LiveServer, chromium, make_dev_weights, run_page, settings_for, shown
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    weights = make_dev_weights(tmp_path_factory.mktemp("weights"))
    with LiveServer(settings_for(weights)) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def test_page_shows_the_objects_the_api_returns_for_an_uploaded_scene(server, browser, tmp_path):
    png = httpx.post(server.url + "/render", json={"objects": [
        {"shape": "cube", "color": "red", "position": {"x": 0.1, "y": -0.1}},
        {"shape": "cylinder", "color": "cyan", "position": {"x": -0.1, "y": 0.1}}], "width": 200, "height": 200}).content
    path = tmp_path / "scene.png"
    path.write_bytes(png)
    api = httpx.post(server.url + "/infer", content=png, headers={"content-type": "image/png"}).json()

    page = run_page(browser, server.url, path)
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert page["status"] == "scene.png: done", page["status"]
    assert page["count"] == str(api["count"]) and page["rows"] == api["count"]
    assert page["recon_width"] == 200  # the reconstruction was rendered at the image's size
    assert [o["shape"] for o in json.loads(page["json"])["objects"]] == [o["shape"] for o in api["objects"]]


def test_page_runs_a_bundled_sample(server, browser):
    browser.get(server.url + "/")
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#samples button"))
    browser.find_elements(By.CSS_SELECTOR, "#samples button")[1].click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "status").text.endswith("done"))
    page = shown(browser)
    assert page["status"] == "sample-1.png: done" and page["count"] != ""


def test_page_reports_a_refused_upload(server, browser, tmp_path):
    path = tmp_path / "notes.png"
    path.write_bytes(b"this is not an image")
    page = run_page(browser, server.url, path)
    assert "422" in page["status"] and "not a PNG or JPEG" in page["status"]
