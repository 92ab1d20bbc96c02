"""Helpers for the API tests: dev weights, a live uvicorn server in a thread, test images.

The server is real (uvicorn on a loopback port picked by the OS), so the tests exercise the
same HTTP stack, middleware and worker threads as production, through httpx.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import torch
import uvicorn
from PIL import Image

from app.config import SERVER_OPTIONS, Settings
from app.main import create_app
from inference.checkpoint import save_weights
from inference.network import AIR, AIRConfig
from renderer.world import World

SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "air.safetensors"


def make_dev_weights(folder: Path, views: bool = False) -> Path:
    """An untrained (seeded) model for the world's defaults: right shapes, meaningless answers.
    ``views``: a view network (it takes any camera of the envelope).

    Its presence bias is raised so that it always reports N objects: every code path that
    handles objects (boxes, ROS, refinement, filtering) then has some to handle.
    """
    torch.manual_seed(0)
    world = World()
    model = AIR(AIRConfig.for_world(world, view_inputs=views))
    with torch.no_grad():
        model.out_pres.bias.fill_(4.0)
    path = folder / "air.safetensors"
    save_weights(model, world, path, {"version": "dev-untrained"})
    return path


class LiveServer:
    """``with LiveServer(settings) as s: httpx.get(s.url + "/healthz")``; waits for /readyz
    unless ``wait_ready=False``. ``s.app`` is the FastAPI app (its ``state.service`` too)."""

    def __init__(self, settings: Settings, wait_ready: bool = True) -> None:
        self.settings = settings
        self.wait_ready = wait_ready
        self.app = create_app(settings)
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on", **SERVER_OPTIONS))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        end = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        if self.wait_ready:
            while httpx.get(self.url + "/readyz").status_code != 200:
                if time.monotonic() > end:
                    raise RuntimeError("service did not become ready: " + httpx.get(self.url + "/readyz").text)
                time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()

    @property
    def service(self):
        return self.app.state.service


def settings_for(weights: Path, **overrides: object) -> Settings:
    """Settings that ignore the environment and any .env file (tests must not depend on them),
    on the CPU unless AIRSCENE_TEST_DEVICE names another device (bench/gpu/run.sh: cuda)."""
    base = dict(weights=weights, device=os.environ.get("AIRSCENE_TEST_DEVICE", "cpu"), threads=1, max_wait_ms=2.0,
                warmup=False)  # with warm-up on, every test server would start a refinement worker
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


# ---------------------------------------------------------------- images


def png_bytes(image: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **save)
    return buf.getvalue()


def table_png(width: int = 64, height: int = 64, mode: str = "RGB") -> bytes:
    """A simple synthetic image in any PIL mode (a grey square on darker ground)."""
    arr = np.full((height, width, 3), 40, np.uint8)
    arr[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = (140, 140, 140)
    rgb = Image.fromarray(arr)
    if mode == "I;16":
        return png_bytes(Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257))
    return png_bytes(rgb.convert(mode))


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (a decompression bomb)."""
    raw = png_bytes(Image.new("L", (8, 8)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    patched = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return raw[:8] + patched + raw[8 + 4 + 4 + 13 + 4:]


def json_body(obj: object) -> bytes:
    return json.dumps(obj).encode()


# ---------------------------------------------------------------- browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium():
    """Debian's headless Chromium through chromedriver (selenium). Fails, not skips, when they
    are missing: ``make test`` installs them."""
    import os

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise RuntimeError(f"{path} is missing: run `make test` (it installs chromium and chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium-manager fetch a browser or driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # every host name but the loopback fails to resolve: a page that needs the internet shows it here
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1200,1000",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def run_page(driver, url: str, image: Path, timeout: float = 30.0) -> dict:
    """Load the demo page, upload ``image``, wait until the answer and its reconstruction are
    shown. Returns what the page shows: count, table rows, status, reconstruction size."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    driver.find_element(By.ID, "file").send_keys(str(image))
    return wait_settled(driver, image.name, timeout)


def wait_settled(driver, file: str = "", timeout: float = 30.0) -> dict:
    """Waits until the page's status reports `file` done (any file when empty) or an error, and
    returns what it shows. Name the file after an earlier answer on the same page: its
    "...: done" stays until the new request starts."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def settled(d) -> bool:
        status = d.find_element(By.ID, "status")
        return (status.text.startswith(file) and status.text.endswith("done")) or \
            "error" in (status.get_attribute("class") or "")

    WebDriverWait(driver, timeout).until(settled)
    return shown(driver)


def shown(driver) -> dict:
    from selenium.webdriver.common.by import By

    return {
        "status": driver.find_element(By.ID, "status").text,
        "count": driver.find_element(By.ID, "count").get_attribute("data-count"),
        "rows": len(driver.find_elements(By.CSS_SELECTOR, "#objects tbody tr")),
        "recon_width": driver.execute_script("return document.getElementById('recon').naturalWidth"),
        "json": driver.find_element(By.ID, "json").get_attribute("textContent"),
    }
