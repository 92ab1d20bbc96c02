"""POST /render: a scene graph in, a PNG out."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.deps import ServiceDep
from app.schemas import RenderRequest

router = APIRouter(tags=["rendering"])


@router.post(
    "/render",
    response_class=Response,
    summary="Render a scene to a PNG",
    responses={200: {"content": {"image/png": {}}, "description": "the rendered image"},
               401: {"description": "API key missing or wrong"},
               422: {"description": "unknown shape or colour, too many objects, bad numbers or size"}},
)
async def render(scene: RenderRequest, service: ServiceDep) -> Response:
    """The ``objects`` list of an /infer answer (or the whole answer) is valid input. Any
    orientation quaternion renders (full 3D); the network itself only knows turns about z."""
    return Response(await service.render(scene), media_type="image/png")
