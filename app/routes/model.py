"""GET /v1/model: what the loaded model knows."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import ServiceDep
from app.schemas import ModelInfo

router = APIRouter(prefix="/v1", tags=["model"])


@router.get("/model", response_model=ModelInfo, summary="Version, shapes, colours, camera, N, metrics")
async def model(service: ServiceDep) -> ModelInfo:
    return service.info()
