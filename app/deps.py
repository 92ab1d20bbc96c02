"""Route dependencies as named types: the service, the settings, and the images of a request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from app.config import Settings
from app.errors import ClientGone, Unprocessable, UnsupportedMediaType
from app.metrics import Metrics
from app.service import ModelService

RAW_IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg")
MAX_CAMERA_CHARS = 4096  # a camera is a few hundred characters; longer ones are refused
ACCEPTED = ("multipart/form-data with a file field 'image' (repeat it for several images), "
            "or a raw image/png or image/jpeg body")


# async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per
# request that waits for the GIL while the model thread holds it (tens of ms under load)
async def get_service(request: Request) -> ModelService:
    return request.app.state.service


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


ServiceDep = Annotated[ModelService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


@dataclass(frozen=True)
class Upload:
    """An /infer request's images (bytes, in order) and the camera JSON texts sent beside them
    as multipart ``camera`` fields (none for a raw body)."""

    images: list[bytes]
    cameras: list[str]


async def read_images(request: Request, settings: SettingsDep) -> Upload:
    """``_read_images``, with a client that hangs up mid-upload answered 499 (not a 500)."""
    try:
        return await _read_images(request, settings)
    except ClientDisconnect:
        raise ClientGone("the client disconnected before the request body was read") from None


async def _read_images(request: Request, settings: SettingsDep) -> Upload:
    """The image bytes of an /infer request, in order: every multipart ``image`` file, or the
    raw body; and any multipart ``camera`` fields. 415 for another content type, 422 for a form
    without images."""
    mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if mime in RAW_IMAGE_TYPES:
        return Upload([await request.body()], [])
    if mime != "multipart/form-data":
        raise UnsupportedMediaType(f"Content-Type {mime or '(none)'!r} is not accepted; send {ACCEPTED}")
    try:
        form = await request.form(max_files=settings.max_images, max_fields=settings.max_images + 16)
    except HTTPException as e:
        if e.status_code != 400:
            raise
        raise Unprocessable(("body",), f"malformed multipart body: {e.detail}") from None
    try:
        parts = form.getlist("image")
        if not parts:
            raise Unprocessable(("body", "image"), f"multipart field 'image' is missing (fields sent: {list(form.keys())})")
        images = []
        for i, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise Unprocessable(("body", "image", i), "field 'image' must be a file upload, not a text field")
            images.append(await part.read())
        cameras = []
        for part in form.getlist("camera"):
            text = (await part.read()).decode("utf-8", "replace") if isinstance(part, UploadFile) else part
            cameras.append(text[:MAX_CAMERA_CHARS + 1])
        return Upload(images, cameras)
    finally:
        await form.close()


ImagesDep = Annotated[Upload, Depends(read_images)]
