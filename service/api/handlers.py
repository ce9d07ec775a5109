"""The REST side of `service.errors`, mapped here once: every failure is `{"error": {"code", "message"}}`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import (
    InvalidInput,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    ServiceError,
    Unauthenticated,
)


def error_response(error: ServiceError) -> JSONResponse:
    """The HTTP answer for a domain error."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthenticated) else None
    return JSONResponse(error.to_body(), status_code=error.http_status, headers=headers)


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for item in errors[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()))
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def _from_validation(error: RequestValidationError) -> ServiceError:
    errors = list(error.errors())
    if any(item.get("type") == "json_invalid" for item in errors):
        return MalformedRequest(f"the body is not valid JSON: {_validation_message(errors)}")
    return InvalidInput(_validation_message(errors))


def install_error_handlers(app: FastAPI) -> None:
    """Register the one mapping from exceptions to HTTP answers."""

    async def on_service_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ServiceError)
        return error_response(error)

    async def on_validation_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return error_response(_from_validation(error))

    async def on_http_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        if error.status_code == 404:
            return error_response(NotFound("no such route"))
        if error.status_code == 405:
            return error_response(MethodNotAllowed("method not allowed on this route"))
        if error.status_code == 400:  # FastAPI could not read the body (e.g. not UTF-8)
            return error_response(MalformedRequest(f"{error.detail}: send UTF-8 JSON"))
        body = {"error": {"code": "http_error", "message": str(error.detail)}}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
