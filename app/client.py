"""A small synchronous client for a running airscene server (httpx).

    from app.client import Client
    with Client("http://127.0.0.1:8000") as c:
        answer = c.infer("photo.png")            # dict; a list for several images
        answer = c.infer(frame)                  # a (H, W, 3) uint8 RGB numpy array or a PIL image
        png = c.render(answer)                   # at the size of the image the answer came from

Images: a path, PNG/JPEG bytes, a PIL image or a uint8 numpy array ((H, W, 3) RGB, (H, W, 4)
RGBA or (H, W) grey); in-memory images are sent as PNG. A server that cannot be reached raises
``ServerUnreachable`` (a ``ConnectionError``) naming the URL; an error answer ``ClientError``.
"""

from __future__ import annotations

import json

import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

ImageLike = bytes | str | Path | Image.Image | np.ndarray


class ClientError(Exception):
    """A non-2xx answer. status: the HTTP status; detail: the server's ``detail``."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


class ServerUnreachable(ConnectionError):
    """No answer from the server at all (nothing listening, DNS, timeout). url: the base URL."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the airscene server at {url}: {reason} "
                         "(is it running? start one with `airscene serve`)")
        self.url = url


class Client:
    """url: the server's base URL. api_key: sent as ``Authorization: Bearer`` when given."""

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def infer(self, images: ImageLike | Sequence[ImageLike], refine: int = 0, min_confidence: float = 0.0,
              format: str = "json", camera: dict | str | Path | None = None) -> dict | list[dict]:
        """POST /infer. One image -> its answer; a list (or a (B, H, W, 3) array) -> a list of
        answers, in order. camera: the images' camera (a dict in the /infer camera schema, or
        the path of a JSON file holding one); None: the server's default camera."""
        single = isinstance(images, (bytes, str, Path, Image.Image)) or (
            isinstance(images, np.ndarray) and images.ndim in (2, 3))
        items = [images] if single else list(images)
        files = []
        for i, img in enumerate(items):
            data = _encode(img, i)
            files.append(("image", (_name(img, i), data, _mime(data))))
        params = {"refine": refine, "min_confidence": min_confidence, "format": format}
        data = {} if camera is None else {"camera": camera_json(camera)}
        body = self._check(self._send("POST", "/infer", params=params, files=files, data=data)).json()
        return [body] if not single and isinstance(body, dict) else body

    def render(self, scene: dict, width: int | None = None, height: int | None = None,
               camera: dict | str | Path | None = None, look: dict | None = None) -> bytes:
        """POST /render with a scene (``{"objects": [...]}`` or an /infer answer) -> PNG bytes.
        Size: ``width``/``height`` if given, else the scene's, else the size of the image an
        /infer answer records (the server's default). camera (dict or JSON file) and look: as
        /render takes them; default: the scene's own, else the server's."""
        body = {"objects": scene.get("objects", [])}
        cam = json.loads(camera_json(camera)) if camera is not None else scene.get("camera")
        for key, value in (("width", width or scene.get("width")), ("height", height or scene.get("height")),
                           ("image", scene.get("image")), ("camera", cam), ("look", look or scene.get("look"))):
            if value:
                body[key] = value
        return self._check(self._send("POST", "/render", json=body)).content

    def model(self) -> dict:
        return self._check(self._send("GET", "/v1/model")).json()

    def limits(self) -> dict:
        """GET /v1/limits: the server's refine, image and size limits."""
        return self._check(self._send("GET", "/v1/limits")).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise ServerUnreachable(str(self._http.base_url).rstrip("/"), _reason(e)) from None

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll /readyz until it says ready; TimeoutError after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > end:
                raise TimeoutError(f"server at {self._http.base_url} not ready after {timeout} s")
            time.sleep(0.1)

    @staticmethod
    def _check(resp: httpx.Response) -> httpx.Response:
        if resp.is_success:
            return resp
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text
        raise ClientError(resp.status_code, detail)


def _encode(img: ImageLike, i: int) -> bytes:
    """The bytes to send: a file's or the bytes as given; in-memory images as PNG (a PIL image
    with its EXIF, so that the service reads it upright as /infer reads the file)."""
    if isinstance(img, bytes):
        return img
    if isinstance(img, (str, Path)):
        return Path(img).read_bytes()
    if isinstance(img, np.ndarray):
        ok_shape = img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))
        if img.dtype != np.uint8 or not ok_shape:
            raise ValueError(f"image {i}: expected an (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey uint8 array, "
                             f"got shape {img.shape} dtype {img.dtype}")
        img = Image.fromarray(np.ascontiguousarray(img))
    if isinstance(img, Image.Image):  # its EXIF travels with it: the service turns it upright as it says
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=1, exif=img.info.get("exif", b""))
        return buf.getvalue()
    raise ValueError(f"image {i}: expected a path, bytes, a PIL image or a numpy array, got {type(img).__name__}")


def _name(img: ImageLike, i: int) -> str:
    return Path(img).name if isinstance(img, (str, Path)) else f"image-{i}.png"


def _mime(data: bytes) -> str:
    return "image/jpeg" if data.startswith(b"\xff\xd8") else "image/png"


def _reason(e: httpx.TransportError) -> str:
    """A short reason for a transport failure (httpx's text, else the exception's name)."""
    text = str(e).strip().splitlines()[-1] if str(e).strip() else ""
    return text or type(e).__name__


def camera_json(camera: dict | str | Path) -> str:
    """A camera as JSON text: a dict as is, or the contents of a JSON file (checked to parse;
    ValueError naming the file otherwise)."""
    if isinstance(camera, dict):
        return json.dumps(camera)
    path = Path(camera)
    try:
        text = path.read_text()
        json.loads(text)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"camera file {path}: {e}") from None
    return text
