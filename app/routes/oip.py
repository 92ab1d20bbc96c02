"""The Open Inference Protocol (KServe v2) beside the service's own API: health, model
metadata and readiness, and inference on encoded images as a BYTES tensor (``app.oip``).
Errors are the protocol's ``{"error": "..."}`` with the status the service would give."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response

from app import oip
from app.deps import ServiceDep
from app.errors import ApiError
from app.schemas import InferParams

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
MODEL = "airscene"
Name = Annotated[str, Path(description="the model's name: airscene", examples=[MODEL])]


def _error(e: ApiError) -> JSONResponse:
    detail = e.detail
    if isinstance(detail, list):  # a 422's located details: one line each
        detail = "; ".join(f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}" for d in detail)
    return JSONResponse({"error": str(detail)}, status_code=e.status_code, headers=e.headers)


def _unknown(name: str) -> JSONResponse:
    return JSONResponse({"error": f"unknown model {name!r}; this server serves {MODEL!r}"}, status_code=404)


@router.get("/health/live", summary="v2: the process is alive")
async def live() -> dict:
    return {"live": True}


@router.get("/health/ready", summary="v2: the model is loaded", responses={503: {"description": "not ready"}})
async def ready(service: ServiceDep) -> JSONResponse:
    ok = service.state == "ready"
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


UNKNOWN = {404: {"description": "no model of that name"}}


@router.get("/models/{name}", summary="v2: model metadata (inputs and outputs)",
            responses={**UNKNOWN, 503: {"description": "loading"}})
async def model_metadata(name: Name, service: ServiceDep) -> JSONResponse:
    if name != MODEL:
        return _unknown(name)
    try:
        engine = service.ready_engine()
    except ApiError as e:
        return _error(e)
    w = engine.world
    return JSONResponse(oip.metadata(MODEL, engine.version, list(w.shape_names), list(w.color_names), w.max_objects))


@router.get("/models/{name}/ready", summary="v2: whether the model is ready",
            responses={**UNKNOWN, 503: {"description": "not ready"}})
async def model_ready(name: Name, service: ServiceDep) -> JSONResponse:
    if name != MODEL:
        return _unknown(name)
    ok = service.state == "ready"
    return JSONResponse({"name": MODEL, "ready": ok}, status_code=200 if ok else 503)


@router.post("/models/{name}/infer", summary="v2: infer on images given as a tensor",
             responses={**UNKNOWN, 401: {"description": "API key missing or wrong"},
                        413: {"description": "body or image too large"}, 422: {"description": "bad request or image"},
                        503: {"description": "loading, or the queue is full (see Retry-After)"}})
async def model_infer(name: Name, request: Request, service: ServiceDep) -> Response:
    """JSON, or JSON followed by binary tensors (``Inference-Header-Content-Length``); see
    ``app.oip`` for the inputs and outputs."""
    if name != MODEL:
        return _unknown(name)
    try:
        engine = service.ready_engine()
        req = oip.parse_request(await request.body(), request.headers.get("inference-header-content-length"))
        answers = await service.infer(req.images, InferParams(), loc=("body", "inputs", "image"),
                                      cameras=req.cameras, gone=request.is_disconnected)
    except ApiError as e:
        return _error(e)
    w = engine.world
    tensors = oip.output_tensors([a.model_dump(mode="json") for a in answers], list(w.shape_names),
                                 list(w.color_names), w.max_objects)
    body, header = oip.encode_response(MODEL, engine.version, req.id, tensors, req.outputs)
    headers = {} if header is None else {"Inference-Header-Content-Length": str(header)}
    return Response(body, media_type="application/octet-stream" if header else "application/json", headers=headers)
