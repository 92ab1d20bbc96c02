"""A small synchronous client for a running airscene server (httpx).

    from app.client import Client
    with Client("http://127.0.0.1:8000") as c:
        answer = c.infer("photo.png")            # dict; a list for several images
        png = c.render(answer, width=256, height=256)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ImageLike = bytes | str | Path


class ClientError(Exception):
    """A non-2xx answer. status: the HTTP status; detail: the server's ``detail``."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


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
              format: str = "json") -> dict | list[dict]:
        """POST /infer. One image (path or bytes) -> its answer; a list -> a list of answers."""
        single = isinstance(images, (bytes, str, Path))
        items = [images] if single else list(images)
        files = [("image", (_name(img, i), _read(img), _mime(img))) for i, img in enumerate(items)]
        params = {"refine": refine, "min_confidence": min_confidence, "format": format}
        body = self._check(self._http.post("/infer", params=params, files=files)).json()
        return [body] if not single and isinstance(body, dict) else body

    def render(self, scene: dict, width: int | None = None, height: int | None = None) -> bytes:
        """POST /render with a scene (``{"objects": [...]}`` or an /infer answer) -> PNG bytes."""
        body = {"objects": scene.get("objects", [])}
        for key, value in (("width", width or scene.get("width")), ("height", height or scene.get("height"))):
            if value:
                body[key] = value
        return self._check(self._http.post("/render", json=body)).content

    def model(self) -> dict:
        return self._check(self._http.get("/v1/model")).json()

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


def _read(img: ImageLike) -> bytes:
    return img if isinstance(img, bytes) else Path(img).read_bytes()


def _name(img: ImageLike, i: int) -> str:
    return f"image-{i}" if isinstance(img, bytes) else Path(img).name


def _mime(img: ImageLike) -> str:
    data = _read(img)[:4] if not isinstance(img, bytes) else img[:4]
    return "image/jpeg" if data.startswith(b"\xff\xd8") else "image/png"
