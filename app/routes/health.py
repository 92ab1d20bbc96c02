"""Liveness, readiness and Prometheus metrics (never behind the API key)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from app.deps import MetricsDep, ServiceDep
from app.schemas import Status

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Status, summary="The process is alive")
async def healthz() -> Status:
    return Status(status="ok")


@router.get("/readyz", response_model=Status, summary="Weights loaded and warmed up",
            responses={503: {"model": Status, "description": "loading, or loading failed"}})
async def readyz(service: ServiceDep) -> Status | JSONResponse:
    if service.state == "ready":
        return Status(status="ready")
    body = Status(status=service.state, detail=service.error or "loading the weights")
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "2"})


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text format)")
async def metrics(m: MetricsDep) -> Response:
    return Response(m.render(), media_type=m.content_type)
