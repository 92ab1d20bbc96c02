"""Liveness, readiness and Prometheus metrics (never behind the API key)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.deps import MetricsDep, ServiceDep, SettingsDep
from app.middleware import key_matches
from app.schemas import Status

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Status, summary="The process is alive")
async def healthz() -> Status:
    return Status(status="ok")


@router.get("/readyz", response_model=Status, summary="Weights loaded and warmed up",
            responses={503: {"model": Status, "description": "loading, or loading failed"}})
async def readyz(request: Request, service: ServiceDep, settings: SettingsDep) -> Status | JSONResponse:
    """Open to every caller (orchestrators probe it without credentials); with an API key set,
    only callers that send the key are told why the weights failed to load (the log says it too)."""
    if service.state == "ready":
        return Status(status="ready")
    detail = service.error or "loading the weights"
    key = settings.api_key
    if key is not None and not key_matches(request.headers.get("authorization"), key.get_secret_value().encode()):
        detail = None
    body = Status(status=service.state, detail=detail)
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "2"})


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text format)")
async def metrics(m: MetricsDep) -> Response:
    return Response(m.render(), media_type=m.content_type)
