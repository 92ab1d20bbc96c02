"""GET /v1/limits: what this server accepts (answers before the model is loaded)."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import SettingsDep
from app.schemas import ServiceLimits

router = APIRouter(prefix="/v1", tags=["model"])


@router.get("/limits", response_model=ServiceLimits, summary="Request limits: refine steps, images, sizes")
async def limits(settings: SettingsDep) -> ServiceLimits:
    return ServiceLimits(max_refine_steps=settings.max_refine_steps, max_images=settings.max_images,
                         max_body_bytes=settings.max_body_bytes, max_pixels=settings.max_pixels,
                         max_request_pixels=settings.max_request_pixels,
                         max_render_side=settings.max_render_side)
