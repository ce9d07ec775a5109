"""Big JSON bodies at native speed, for the routes whose bodies can be megabytes (`/v1/lift`).

A 4096-frame clip is ~1.2 MB of JSON in and ~2.4 MB out, and all of it is parsed and written on the event loop
that also serves the live streams. FastAPI's own path builds the Python objects twice each way (`json.loads`,
then pydantic copies them while validating; `.tolist()` of the poses, then the response model's validation
and serialisation). Here:

- `ModelBodyRoute` parses a JSON body once, with pydantic's Rust parser validating as it goes
  (`model_validate_json`), and hands FastAPI the model; FastAPI passes a model instance through its own
  validation untouched. The route is declared as usual (`body: LiftRequest`), so its OpenAPI description,
  its dependencies' order (a 401 before a 422) and its content-type rules are FastAPI's. A body the fast
  parse refuses takes FastAPI's own path again (`json.loads`, then validation of the result), so a bad
  body gets exactly the status, error code, location and message it always got
  (`service.api.handlers`); only refused bodies are parsed twice.
- `NumpyJSONResponse` writes numpy arrays straight to JSON (orjson), without a Python float per value.
  float32 arrays come out as the shortest text that reads back as the same float32
  (`1.1`, not `1.100000023841858`); NaN is written as null, as pydantic writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import orjson
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class _ModelBodyRequest(Request):
    """A request whose JSON body reads (`json()`, which FastAPI calls for a JSON content type) as an
    instance of `model`, or, if the fast parse refuses it, as plain JSON for FastAPI to validate."""

    def __init__(self, request: Request, model: type[BaseModel]):
        super().__init__(request.scope, request.receive)
        self.model = model

    async def json(self) -> Any:
        try:
            return self.model.model_validate_json(await self.body())
        except ValidationError:  # FastAPI's own path decides what is wrong, and says it as it always did
            return await super().json()


class ModelBodyRoute(APIRoute):
    """A route whose one JSON body, a pydantic model, is parsed and validated in one native pass."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        model = None if self.body_field is None else self.body_field.field_info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return handle
        body_model: type[BaseModel] = model

        async def parse_once(request: Request) -> Response:
            return await handle(_ModelBodyRequest(request, body_model))

        return parse_once


class NumpyJSONResponse(JSONResponse):
    """A JSON answer whose content may hold numpy arrays (written by orjson, C-contiguous or not)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY, default=_contiguous)


def _contiguous(value: Any) -> Any:
    """orjson writes C-contiguous arrays natively and hands anything else here: a copy that is."""
    if isinstance(value, np.ndarray) and not value.flags.c_contiguous:
        return np.ascontiguousarray(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
