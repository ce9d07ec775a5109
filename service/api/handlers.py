"""The REST side of `service.errors`, mapped here once: every failure is
`{"error": {"code", "message", "location"?}}`, `location` the path of the offending part of the body.

pydantic's validation errors (types: a string where a number belongs, an unknown layout, a missing field) are
mapped onto the core's location vocabulary: the body's field names and list indices, without pydantic's
leading "body".
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import (
    InvalidInput,
    Location,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    ServiceError,
    Unauthenticated,
    format_location,
)


def error_response(error: ServiceError) -> JSONResponse:
    """The HTTP answer for a domain error."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthenticated) else None
    return JSONResponse(error.to_body(), status_code=error.http_status, headers=headers)


def _location(item: dict[str, Any]) -> Location:
    """A pydantic error's `loc` as a location in the body: ("body", "frames", 0, "seq") -> frames[0].seq."""
    loc = tuple(part for part in item.get("loc", ()) if isinstance(part, str | int))
    return loc[1:] if loc[:1] == ("body",) else loc


def _validation_error(errors: list[Any]) -> InvalidInput:
    """pydantic's errors as one InvalidInput at the first one's location; the others' places are in the
    message (`width: Input should be a valid integer; fps: Input should be a valid number`)."""
    located = [(_location(item), str(item.get("msg", "invalid"))) for item in errors[:5]]
    first, first_message = located[0] if located else ((), "invalid request")
    parts = [first_message if first else f"body: {first_message}"]
    parts += [f"{format_location(where) or 'body'}: {message}" for where, message in located[1:]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return InvalidInput("; ".join(parts) + more, first)


def _from_validation(error: RequestValidationError) -> ServiceError:
    errors = list(error.errors())
    if any(item.get("type") == "json_invalid" for item in errors):
        invalid = next(item for item in errors if item.get("type") == "json_invalid")
        why = (invalid.get("ctx") or {}).get("error") or invalid.get("msg", "invalid")
        at = [part for part in invalid.get("loc", ()) if isinstance(part, int)]
        where = f" at character {at[0]}" if at else ""
        return MalformedRequest(f"the body is not valid JSON: {why}{where}")
    return _validation_error(errors)


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
