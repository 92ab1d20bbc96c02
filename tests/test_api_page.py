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
    with LiveServer(settings_for(weights, max_refine_steps=12)) as s:
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


# ---------------------------------------------------------------- what a new user meets


def _scene_png(server, tmp_path, name: str = "three.png"):
    png = httpx.post(server.url + "/render", json={"objects": [
        {"shape": "cube", "color": "red", "position": {"x": 0.1, "y": -0.1}},
        {"shape": "cone", "color": "blue", "position": {"x": 0.12, "y": -0.05}},
        {"shape": "cylinder", "color": "cyan", "position": {"x": -0.1, "y": 0.1}}], "width": 256, "height": 256}).content
    path = tmp_path / name
    path.write_bytes(png)
    return path


def test_page_takes_the_refine_limit_from_the_server(server, browser):
    browser.get(server.url + "/")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "refine").get_attribute("max") == "12")
    assert "0 to 12" in browser.find_element(By.ID, "refine-max").text


def test_page_clears_the_previous_result_on_error(server, browser, tmp_path):
    assert run_page(browser, server.url, _scene_png(server, tmp_path))["rows"] == 3
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    page = run_page(browser, server.url, bad)
    assert "422" in page["status"]
    assert page["rows"] == 0 and page["json"] == "" and page["count"] == "" and page["recon_width"] == 0
    assert browser.execute_script("return window.airsceneLayout") is None
    blank = browser.execute_script(
        "const c = document.getElementById('canvas');"
        "return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.every((v) => v === 0);")
    assert blank, "the previous image and boxes are still drawn"


def _overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def test_page_labels_overlap_neither_each_other_nor_the_objects(server, browser, tmp_path):
    page = run_page(browser, server.url, _scene_png(server, tmp_path))
    assert page["status"].endswith("done")
    layout = browser.execute_script("return window.airsceneLayout")
    labels, boxes = layout["labels"], layout["boxes"]
    assert len(labels) == len(boxes) == 3
    for i, label in enumerate(labels):
        assert label["x"] >= layout["image"]["w"] and label["y"] >= 0  # beside the image, not on it
        assert not any(_overlap(label, box) for box in boxes)
        assert not any(_overlap(label, other) for other in labels[i + 1:])


def test_page_labels_show_shape_and_colour_confidences(server, browser, tmp_path):
    page = run_page(browser, server.url, _scene_png(server, tmp_path))
    answer = json.loads(page["json"])
    texts = [label["text"] for label in browser.execute_script("return window.airsceneLayout")["labels"]]
    for o, text in zip(answer["objects"], texts):
        assert f"{o['color']} {o['shape']}" in text
        assert f"shape {100 * o['shape_confidence']:.1f}%" in text
        assert f"colour {100 * o['color_confidence']:.1f}%" in text
    header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#objects th")]
    assert "shape conf." in header and "colour conf." in header


def test_page_has_a_favicon_the_browser_loads(server, browser):
    browser.get(server.url + "/")
    href = browser.find_element(By.CSS_SELECTOR, "link[rel=icon]").get_attribute("href")
    assert href == server.url + "/static/favicon.png"
    assert httpx.get(href).status_code == 200


def test_docs_page_renders_without_internet(server, browser):
    """Swagger UI draws the API from the server's own files (the browser resolves no other host)."""
    browser.get(server.url + "/docs")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock"))
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/infer", "/render", "/v1/model"} <= paths
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert loaded and all(url.startswith(server.url) for url in loaded), loaded
