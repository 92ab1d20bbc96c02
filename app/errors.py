"""The service's client errors, and the handlers that turn every failure into JSON.

Every error body is ``{"detail": ...}``: a string, or for validation errors a list of
``{"loc": [...], "msg": ..., "type": ...}`` as FastAPI gives them (without the offending input,
which may be huge or not JSON-serialisable, e.g. NaN). Nothing ever carries a traceback.

The exceptions are ``HTTPException`` subclasses so that FastAPI passes them through its own
body-reading code untouched (it turns any other exception raised there into a 400).
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

log = logging.getLogger("airscene")


class ApiError(HTTPException):
    """A client-visible error with a fixed status."""

    status = 400

    def __init__(self, detail: object, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=self.status, detail=detail, headers=headers)


class Unauthorized(ApiError):
    status = 401

    def __init__(self, detail: str = "missing or invalid API key: send 'Authorization: Bearer <key>'") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class PayloadTooLarge(ApiError):
    status = 413


class ClientGone(ApiError):
    """499 (nginx's "client closed request"): the client hung up before its request was read.
    Nobody reads the answer; the status keeps it out of the 5xx counts."""

    status = 499


class UnsupportedMediaType(ApiError):
    status = 415


class Unprocessable(ApiError):
    """422 with a FastAPI-style detail list naming the field."""

    status = 422

    def __init__(self, loc: tuple[str | int, ...] | list[str | int], msg: str, kind: str = "value_error") -> None:
        super().__init__([{"loc": list(loc), "msg": msg, "type": kind}])


class Unavailable(ApiError):
    """503: the model is not ready, or the queue is full. Always carries Retry-After."""

    status = 503

    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})


MAX_DETAIL_ITEMS = 20  # an error body stays small whatever the request held
MAX_TEXT = 300


def _short(value: object) -> str | int:
    """A loc item or message, cut to MAX_TEXT characters (a 1 MB field name is not echoed)."""
    if isinstance(value, int):
        return value
    text = str(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


def _clean(errors: list[dict]) -> list[dict]:
    """FastAPI/pydantic error dicts -> loc/msg/type only (no input, ctx or url), bounded in
    number and length."""
    return [{"loc": [_short(x) for x in e.get("loc", ())], "msg": _short(e.get("msg", "")),
             "type": _short(e.get("type", ""))} for e in errors[:MAX_DETAIL_ITEMS]]


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _clean(list(exc.errors()))}, status_code=422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


BODY_PARSE_ERROR = "There was an error parsing the body"  # FastAPI's 400 for a body it cannot decode


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """FastAPI's own 400 for a JSON body that is not even text (invalid UTF-8) becomes the 422
    every other unreadable body gets; any other HTTP error as FastAPI answers it."""
    if exc.status_code == 400 and exc.detail == BODY_PARSE_ERROR:
        return JSONResponse({"detail": [{"loc": ["body"], "msg": "the body is not JSON text (invalid UTF-8)",
                                         "type": "json_invalid"}]}, status_code=422)
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """JSON for validation errors and for anything unexpected (logged, never echoed)."""
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
