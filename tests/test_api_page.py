"""The demo page in a real headless browser (Debian chromium + chromedriver), dev weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest
from apiserver import LiveServer, chromium, make_dev_weights, run_page, settings_for, wait_settled
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
    page = wait_settled(browser, "sample-1.png")
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


# ---------------------------------------------------------------- the user's camera

SAMPLES = Path(__file__).resolve().parent.parent / "app" / "static" / "samples"

# Every fetch the page makes, with what it sent: the /infer form's camera field, a JSON body.
RECORD_FETCHES = """
window.sent = [];
const realFetch = window.fetch;
window.fetch = (url, opts) => {
  const body = opts && opts.body;
  window.sent.push({url: String(url), camera: body instanceof FormData ? body.get("camera") : null,
                    json: typeof body === "string" ? body : null});
  return realFetch(url, opts);
};
"""


@pytest.fixture(scope="module")
def view_server(tmp_path_factory):
    """A server with untrained view weights: they take any camera of the envelope."""
    weights = make_dev_weights(tmp_path_factory.mktemp("view-weights"), views=True)
    with LiveServer(settings_for(weights)) as s:
        yield s


def _open_page(browser, url: str) -> None:
    browser.get(url + "/")
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#samples button"))
    browser.execute_script(RECORD_FETCHES)


def _pick(browser, file: str) -> dict:
    browser.find_element(By.CSS_SELECTOR, f'#samples button[data-file="{file}"]').click()
    return wait_settled(browser, file)


def _camera_samples() -> list[dict]:
    samples = [s for s in json.loads((SAMPLES / "samples.json").read_text()) if "camera" in s]
    assert len(samples) >= 4
    return samples


def test_camera_samples_are_small_and_from_cameras_of_the_envelope():
    from app.camera import CameraIn, to_cameras
    from renderer.pinhole import envelope_violations
    from renderer.world import World

    sizes = set()
    for s in _camera_samples():
        assert (SAMPLES / s["file"]).stat().st_size < 60_000, s["file"]
        cam = s["camera"]
        sizes.add((cam["width"], cam["height"]))
        cams = to_cameras(CameraIn.model_validate(cam), cam["height"], cam["width"])
        assert envelope_violations(cams, World().envelope) == [""]
        assert abs(float(cams.describe()["elevation_deg"][0]) - s["view"]["elevation_deg"]) < 0.01
        assert s["view"]["elevation_deg"] != 60 and s["count"] == len(s["objects"]) >= 1
    assert {(320, 240), (320, 180)} <= sizes


def test_page_sends_the_camera_of_a_camera_sample(view_server, browser):
    sample = _camera_samples()[1]
    _open_page(browser, view_server.url)
    envelope = lambda d: d.find_element(By.ID, "envelope").get_attribute("textContent")  # noqa: E731 (box closed)
    WebDriverWait(browser, 10).until(envelope)
    assert "30 to 85° below the horizon" in envelope(browser)
    page = _pick(browser, sample["file"])
    assert page["status"] == f"{sample['file']}: done", page["status"]
    assert json.loads(browser.find_element(By.ID, "camera").get_attribute("value")) == sample["camera"]
    sent = browser.execute_script("return window.sent")
    infer = [r for r in sent if r["url"].startswith("/infer")]
    assert len(infer) == 1 and json.loads(infer[0]["camera"]) == sample["camera"]
    answer = json.loads(page["json"])
    assert answer["camera"]["elevation_deg"] == pytest.approx(sample["view"]["elevation_deg"], abs=0.01)
    assert answer["camera"]["distance_m"] == pytest.approx(sample["view"]["distance_m"], abs=1e-3)
    line = browser.find_element(By.ID, "camera-line").text
    assert f"elevation {sample['view']['elevation_deg']:.1f}°" in line and "the camera sent" in line
    # the reconstruction is drawn from the answer's camera, at the image's size
    render = [json.loads(r["json"]) for r in sent if r["url"] == "/render"]
    assert len(render) == 1 and render[0]["camera"] == answer["camera"]
    assert page["recon_width"] == sample["camera"]["width"]
    assert browser.execute_script("return document.getElementById('recon').naturalHeight") == sample["camera"]["height"]

    # a default-camera sample empties the box again: no camera is sent
    browser.execute_script("window.sent = []")
    page = _pick(browser, "sample-0.png")
    assert page["status"] == "sample-0.png: done"
    assert browser.find_element(By.ID, "camera").get_attribute("value") == ""
    infer = [r for r in browser.execute_script("return window.sent") if r["url"].startswith("/infer")]
    assert len(infer) == 1 and infer[0]["camera"] is None
    assert json.loads(page["json"])["camera"]["elevation_deg"] == pytest.approx(60, abs=0.01)
    assert "the server's default camera" in browser.find_element(By.ID, "camera-line").text


def _type_camera(browser, text: str) -> None:
    browser.execute_script(
        "const box = document.getElementById('camera'); box.value = arguments[0];"
        "box.dispatchEvent(new Event('input'));", text)


def test_page_refuses_a_camera_that_is_not_json_without_a_request(view_server, browser, tmp_path):
    _open_page(browser, view_server.url)
    _type_camera(browser, '{"position": {"x": 0.5, "y": 0, "z": 0.8}, "orientation": ')
    browser.find_element(By.ID, "file").send_keys(str(_scene_png(view_server, tmp_path)))
    page = wait_settled(browser)
    assert "camera: not valid JSON" in page["status"] and "nothing was sent" in page["status"]
    assert browser.find_element(By.ID, "camera").get_attribute("aria-invalid") == "true"
    assert page["count"] == "" and page["json"] == ""
    assert not [r for r in browser.execute_script("return window.sent") if r["url"].startswith("/infer")]


def test_page_shows_the_servers_message_for_a_camera_outside_the_envelope(view_server, browser, tmp_path):
    import torch

    from renderer.camera import camera_dict
    from renderer.pinhole import look_at_cameras

    # 20 degrees above the table, 1.1 m away: below the envelope's 30 degrees
    eye = torch.tensor([[1.1 * math.cos(math.radians(20)), 0.0, 1.1 * math.sin(math.radians(20))]])
    camera = camera_dict(look_at_cameras(eye, torch.zeros(1, 3), torch.tensor([45.0]), 256, 256))
    _open_page(browser, view_server.url)
    _type_camera(browser, json.dumps(camera))
    browser.find_element(By.ID, "file").send_keys(str(_scene_png(view_server, tmp_path)))
    page = wait_settled(browser)
    assert "The camera was refused" in page["status"] and "422" in page["status"], page["status"]
    assert "body.camera" in page["status"] and "elevation_deg 20" in page["status"] and "30..85" in page["status"]
    assert browser.find_element(By.ID, "camera").get_attribute("aria-invalid") == "true"
    assert page["count"] == "" and page["rows"] == 0
    infer = [r for r in browser.execute_script("return window.sent") if r["url"].startswith("/infer")]
    assert len(infer) == 1 and json.loads(infer[0]["camera"]) == camera


def test_page_shows_that_fixed_camera_weights_refuse_a_camera(server, browser):
    _open_page(browser, server.url)
    envelope = lambda d: d.find_element(By.ID, "envelope").get_attribute("textContent")  # noqa: E731 (box closed)
    WebDriverWait(browser, 10).until(envelope)
    assert "the fixed camera only" in envelope(browser)
    page = _pick(browser, _camera_samples()[0]["file"])
    assert "The camera was refused" in page["status"] and "422" in page["status"]
    assert "know only their world's fixed camera" in page["status"], page["status"]


# ---------------------------------------------------------------- trust


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    """Dev weights whose calibration flags every image as out of the world (a fit of 2 is never reached)."""
    weights = make_dev_weights(tmp_path_factory.mktemp("strict-weights"))
    doc = json.loads(weights.with_suffix(".json").read_text())
    doc["meta"]["calibration"] = {"temperature": {"presence": 1.0, "shape": 1.0, "color": 1.0},
                                  "trust": [1.0, 0.0, 0.0], "limits": {"min_fit": 2.0}}
    weights.with_suffix(".json").write_text(json.dumps(doc))
    with LiveServer(settings_for(weights)) as s:
        yield s


def test_page_shows_fit_trust_and_the_residual(server, browser):
    _open_page(browser, server.url)
    page = _pick(browser, "sample-0.png")
    assert page["status"] == "sample-0.png: done"
    quality = browser.find_element(By.ID, "quality")
    answer = json.loads(page["json"])
    assert quality.get_attribute("data-in-world") == "true" and "warn" not in (quality.get_attribute("class") or "")
    assert f"fit {answer['quality']['fit']:.2f}" in quality.text and "trust" in quality.text
    assert "not calibrated" in quality.text  # dev weights carry no calibration
    assert all("fit" in label["text"] for label in browser.execute_script("return window.airsceneLayout.labels"))
    assert browser.execute_script("return document.getElementById('residual').naturalWidth") > 0


def test_page_says_plainly_when_an_image_is_not_of_the_models_world(strict_server, browser):
    _open_page(browser, strict_server.url)
    page = _pick(browser, "sample-0.png")
    assert page["status"] == "sample-0.png: done"
    quality = browser.find_element(By.ID, "quality")
    assert quality.get_attribute("data-in-world") == "false" and "warn" in quality.get_attribute("class")
    assert "does not look like the world the model knows" in quality.text
