"""The FastAPI application: ``app.main:app`` (settings from the environment) or ``create_app(settings)``.

Start-up (lifespan) starts loading the weights in the torch worker thread and returns at once:
``/healthz`` answers straight away and ``/readyz`` says 503 until the model is loaded and warm.

Middleware, outermost first: metrics (sees every status, 401s and 413s included), CORS, the
API key gate, the body-size limit, the unknown-query-parameter check.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount

from app import __version__
from app.config import Settings
from app.docs import install_docs
from app.errors import install_error_handlers
from app.metrics import Metrics
from app.middleware import ApiKeyGate, BodyLimit, HeadLimit, JsonCORS, MetricsMiddleware
from app.query import RejectUnknownQuery, allowed_query_parameters
from app.routes import health, infer, limits, model, oip, render
from app.service import ModelService
from inference.checkpoint import read_config
from renderer.world import World

STATIC = Path(__file__).resolve().parent / "static"
PROTECTED = ("/infer", "/render", f"/v2/models/{oip.MODEL}/infer")

DESCRIPTION = """\
Inverse graphics for tabletop scenes (Attend, Infer, Repeat with a PyTorch3D renderer).

`POST /infer` turns a camera image into a scene graph; `POST /render` turns a scene graph into
an image, and the output of one is valid input to the other. World frame of ROS REP-103: metres,
z up, origin at the table centre, quaternions in x, y, z, w order.

`/render` accepts any orientation quaternion (full 3D), but the trained prior and the network
are tabletop: objects rest on the table and turn about z only (yaw).

When the server has an API key, `/infer` and `/render` need `Authorization: Bearer <key>`.
A query parameter a route does not document is refused with a 422 that names it.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. ``settings`` defaults to ``Settings()`` (the ``AIRSCENE_*`` environment)."""
    settings = settings or Settings()
    logging.getLogger("airscene").setLevel(settings.log_level.upper())
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = ModelService(settings, metrics)
        app.state.service = service
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="airscene", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # install_docs: the same pages, served offline
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    for router in (infer.router, render.router, model.router, limits.router, health.router, oip.router):
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.png", media_type="image/png")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    install_docs(app)

    _customise_openapi(app, settings)

    paths = frozenset(r.path for r in app.routes if hasattr(r, "path"))
    # added innermost first: RejectUnknownQuery runs last, MetricsMiddleware first
    routed = sorted(r.path for r in app.routes if hasattr(r, "path") and not isinstance(r, Mount))
    app.add_middleware(RejectUnknownQuery, allowed=lambda: allowed_query_parameters(app.openapi(), routed))
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.api_key is not None and settings.api_key.get_secret_value():
        app.add_middleware(ApiKeyGate, key=settings.api_key.get_secret_value(), protected=PROTECTED)
    if settings.cors_origins:
        app.add_middleware(JsonCORS, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    app.add_middleware(HeadLimit)
    app.add_middleware(MetricsMiddleware, metrics=metrics, known_paths=lambda: paths)
    return app


def _customise_openapi(app: FastAPI, settings: Settings) -> None:
    """The OpenAPI schema says what the service enforces: this deployment's limits (refine
    steps, images per request, render size) and the weights' world (at most N objects, the shape
    and colour names), read from the weights' .json at start (left general when it cannot be
    read: the service then is not ready anyway). With an API key, the bearer scheme (/docs gets
    an Authorize button; the key itself is enforced by ``ApiKeyGate``, before the body is read)."""
    build = app.openapi
    try:
        world: World | None = World.from_dict(read_config(settings.weights)["world"])
    except (ValueError, KeyError, OSError):
        world = None

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            limit_schema(schema, settings, world)
            if settings.api_key is not None and settings.api_key.get_secret_value():
                schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
                for path in PROTECTED:
                    for op in schema["paths"].get(path, {}).values():
                        op["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def limit_schema(schema: dict, settings: Settings, world: World | None) -> None:
    """Write the limits of ``settings`` and the names and N of ``world`` into a generated schema."""
    infer = schema["paths"]["/infer"]["post"]
    for p in infer["parameters"]:
        if p["name"] == "refine":
            p["schema"]["maximum"] = settings.max_refine_steps
    form = infer["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    form["image"].update(minItems=1, maxItems=settings.max_images)
    form["camera"]["maxItems"] = settings.max_images
    comps = schema["components"]["schemas"]
    render = comps["RenderRequest"]["properties"]
    for side in ("width", "height"):
        for branch in render[side]["anyOf"]:
            if branch.get("type") == "integer":
                branch["maximum"] = settings.max_render_side
    if world is not None:
        render["objects"]["maxItems"] = world.max_objects
        comps["SceneObject"]["properties"]["shape"]["enum"] = list(world.shape_names)
        comps["SceneObject"]["properties"]["color"]["enum"] = list(world.color_names)


def _configure_logging() -> None:
    if not logging.getLogger("airscene").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("airscene").addHandler(handler)


_configure_logging()
app = create_app()
