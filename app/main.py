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
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount

from app import __version__
from app.config import Settings
from app.docs import install_docs
from app.errors import install_error_handlers
from app.metrics import Metrics
from app.middleware import ApiKeyGate, BodyLimit, MetricsMiddleware
from app.query import RejectUnknownQuery, allowed_query_parameters
from app.routes import health, infer, limits, model, render
from app.service import ModelService

STATIC = Path(__file__).resolve().parent / "static"
PROTECTED = ("/infer", "/render")

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
    for router in (infer.router, render.router, model.router, limits.router, health.router):
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.png", media_type="image/png")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    install_docs(app)

    if settings.api_key is not None and settings.api_key.get_secret_value():
        _document_bearer(app)

    paths = frozenset(r.path for r in app.routes if hasattr(r, "path"))
    # added innermost first: RejectUnknownQuery runs last, MetricsMiddleware first
    routed = sorted(r.path for r in app.routes if hasattr(r, "path") and not isinstance(r, Mount))
    app.add_middleware(RejectUnknownQuery, allowed=lambda: allowed_query_parameters(app.openapi(), routed))
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.api_key is not None and settings.api_key.get_secret_value():
        app.add_middleware(ApiKeyGate, key=settings.api_key.get_secret_value(), protected=PROTECTED)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    app.add_middleware(MetricsMiddleware, metrics=metrics, known_paths=lambda: paths)
    return app


def _document_bearer(app: FastAPI) -> None:
    """Show the bearer key in the OpenAPI schema (/docs gets an Authorize button). The key itself
    is enforced by ``ApiKeyGate``, before the body is read."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path in PROTECTED:
                for op in schema["paths"].get(path, {}).values():
                    op["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _configure_logging() -> None:
    if not logging.getLogger("airscene").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("airscene").addHandler(handler)


_configure_logging()
app = create_app()
