"""``/docs`` (Swagger UI) and ``/redoc`` that work without internet.

FastAPI's own pages load their JavaScript and CSS from a CDN, so on a robot's network without
internet ``/docs`` is a blank page. Here the same pages load Swagger UI and ReDoc from the files
the ``fastapi-offline`` package installs, served under ``/docs-assets``; the favicon is the demo
page's. Nothing on either page points off the server.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs-assets"
FAVICON_URL = "/static/favicon.png"


def install_docs(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and their assets to ``app`` (built with ``docs_url=None,
    redoc_url=None``)."""
    if not (ASSETS / "swagger-ui-bundle.js").exists():
        raise RuntimeError(f"Swagger UI files missing in {ASSETS}: reinstall fastapi-offline")
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{app.title}: API",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css", swagger_favicon_url=root + FAVICON_URL,
            # no badge from the online validator (it would call out to validator.swagger.io)
            swagger_ui_parameters={"validatorUrl": None})

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=root + openapi_url, title=f"{app.title}: API",
                              redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=root + FAVICON_URL, with_google_fonts=False)
