"""POST /infer: camera images in, scene graphs out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.deps import ImagesDep, ServiceDep
from app.schemas import InferParams, InferResponse, RosInferResponse

router = APIRouter(tags=["inference"])

Answer = InferResponse | RosInferResponse


@router.post(
    "/infer",
    response_model=Answer | list[Answer],
    summary="Infer the objects in one or more images",
    openapi_extra={"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "camera": {"type": "array", "items": {"type": "string"},
                       "description": "the camera as JSON: one for all images, or one per image"}}}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}},
    responses={401: {"description": "API key missing or wrong"}, 413: {"description": "body or image too large"},
               415: {"description": "not multipart, PNG or JPEG"}, 422: {"description": "bad image or option"},
               503: {"description": "loading, or the queue is full (see Retry-After)"}},
)
async def infer(request: Request, upload: ImagesDep, params: Annotated[InferParams, Query()],
                service: ServiceDep) -> Answer | list[Answer]:
    """The image as multipart field ``image`` or a raw PNG/JPEG body; any size and mode (grey,
    RGBA, palette, 16-bit) are accepted, and used whole. One image gives one answer; several
    ``image`` fields give a list of answers in order. The image's camera (pose in the table
    frame and intrinsics) comes as a multipart ``camera`` field (one for all images, or one per
    image) or the ``camera`` query parameter, as JSON; without one, the deployment's default
    camera (AIRSCENE_CAMERA) or the world's. A camera outside the supported envelope (GET
    /v1/model) is a 422 naming the field. Positions are metres in the table frame (z up, origin
    at the table centre), orientations (x, y, z, w) quaternions."""
    images = upload.images
    answers = await service.infer(images, params, loc=("body", "image") if len(images) > 1 else ("body",),
                                  cameras=upload.cameras, gone=request.is_disconnected)
    return answers[0] if len(answers) == 1 else answers
