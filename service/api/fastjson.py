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
  A route may name big number arrays of its body (`ModelBodyRoute.arrays`, `/v1/lift`'s keypoints and scores):
  a big body (over `FAST_BODY_BYTES`) is then parsed by orjson (~8 ms for 4096 frames, one native call), the
  rest of the body is validated by the model as JSON as always, and the arrays become float64 numpy arrays
  `SLICE_FRAMES` frames at a time, the loop free between slices. Only a body that is plainly good takes this
  path: numbers only (no booleans, strings, nulls or non-finite values), every array of its exact shape and
  all of one length; anything else takes the paths above, which answer as they always did. The model then
  holds those arrays where its type says lists (the core reads either); it is not dumped.
- `dumps_json` writes numpy arrays straight to JSON (orjson), without a Python float per value.
  float32 arrays come out as the shortest text that reads back as the same float32
  (`1.1`, not `1.100000023841858`); NaN is written as null, as pydantic writes it. `render_sliced`
  writes the same bytes a few hundred frames at a time, the loop free between slices (`JSONBytesResponse`
  sends them).
"""

from __future__ import annotations

import asyncio
import gc
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import orjson
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

FAST_BODY_BYTES = 64 * 1024  # a body bigger than this has its number arrays read in slices
SLICE_FRAMES = 256  # frames per slice, read or written between two turns of the event loop (~0.5 ms each)
SCAN_BYTES = 256 * 1024  # bytes of a body searched between two turns of the event loop

ArrayShapes = Mapping[str, tuple[int, ...]]  # a body field's name: the shape of each of its items


class _ModelBodyRequest(Request):
    """A request whose JSON body reads (`json()`, which FastAPI calls for a JSON content type) as an
    instance of `model`, or, if the fast parse refuses it, as plain JSON for FastAPI to validate."""

    def __init__(self, request: Request, model: type[BaseModel], arrays: ArrayShapes, pause_s: float):
        super().__init__(request.scope, request.receive)
        self.model = model
        self.arrays = arrays
        self.pause_s = pause_s

    async def json(self) -> Any:
        body = await self.body()
        if self.arrays and len(body) > FAST_BODY_BYTES:
            parsed = await _parse_in_slices(self.model, body, self.arrays, self.pause_s)
            if parsed is not None:
                return parsed
        try:
            return self.model.model_validate_json(body)
        except ValidationError:  # FastAPI's own path decides what is wrong, and says it as it always did
            return await super().json()


_gc_pausers = 0  # parses in progress that pause the cyclic garbage collector
_gc_was_enabled = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off meanwhile (back as it was when the last parse ends). A big body is
    some 10^5 short-lived lists: each would count towards collections of the whole heap (~100 ms each on a
    loaded server, for objects that refcounting frees anyway once the arrays are read)."""
    global _gc_pausers, _gc_was_enabled
    if _gc_pausers == 0:
        _gc_was_enabled = gc.isenabled()
        gc.disable()
    _gc_pausers += 1
    try:
        yield
    finally:
        _gc_pausers -= 1
        if _gc_pausers == 0 and _gc_was_enabled:
            gc.enable()


async def _parse_in_slices(
    model: type[BaseModel], body: bytes, arrays: ArrayShapes, pause_s: float = 0.0
) -> BaseModel | None:
    """`body` as `model` with its `arrays` fields as float64 arrays, read a slice at a time with the loop
    free for `pause_s` between slices; None unless the body is plainly good (then `model_validate_json`
    decides, and says what is wrong if anything is)."""
    if await _holds_any(body, (b"true", b"false"), pause_s):  # a boolean may stand for a number
        return None
    with _gc_paused():  # the parsed lists are all freed when _parse returns, before the collector is back
        parsed = await _parse_split(model, body, arrays, pause_s)
        return parsed if parsed is not None else await _parse(model, body, arrays, pause_s)


async def _parse_split(
    model: type[BaseModel], body: bytes, arrays: ArrayShapes, pause_s: float = 0.0
) -> BaseModel | None:
    """`body` as `model`, its `arrays` cut out of the text by `bytes.find` and parsed a piece of about
    `PIECE_BYTES` at a time, between turns of the loop; the rest of the body, each array replaced by a marker
    string, parsed last. None where the text does not split that way (an array empty, whitespace between its
    closing brackets, a field of that name nested before the top-level one), or where anything is not as a
    plainly good body has it: then the body is parsed whole.

    Nothing here decides what the body means from the text: every piece and the rest are parsed by orjson,
    and the rest must hold each marker as the top-level value of its field, so a cut in the wrong place
    fails there instead.
    """
    values: dict[str, np.ndarray] = {}
    spans: list[tuple[int, int, bytes]] = []
    markers: dict[str, bytes] = {}
    for index, (name, shape) in enumerate(arrays.items()):
        marker = markers[name] = b'"\\u0000poselift-array-%d"' % index  # a JSON string no client sends
        if marker in body:
            return None
        found = _array_start(body, name)
        if found is None:
            continue
        parts, end = [], -1
        async for piece, after in _pieces(body, found + 1, len(shape), pause_s):
            part = None if piece is None else _float_rows(piece, shape)
            if part is None:
                return None
            parts.append(part)
            end = after
        if end < 0:
            return None
        values[name] = np.concatenate(parts)
        spans.append((found, end, marker))
    if not values:  # nothing cut out: the whole parse is all there is to do
        return None
    rest, at = [], 0
    for start, end, marker in sorted(spans):
        if start < at:
            return None  # overlapping: not what a good body looks like
        rest += [body[at:start], marker]
        at = end
    rest.append(body[at:])
    try:
        data = orjson.loads(b"".join(rest))
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    for name in arrays:
        if name in values:
            if data.get(name) != orjson.loads(markers[name]):
                return None  # the array cut out was not the body's top-level field of that name
            data[name] = []  # the model's own check of everything else: an empty list passes its type
        elif data.get(name) is not None:  # given, but not cut out (empty, not an array): parsed whole
            return None
    if len({len(value) for value in values.values()}) > 1:
        return None
    return _with_arrays(model, data, values)


def _array_start(body: bytes, name: str) -> int | None:
    """Where the first `"name": [` of `body` (any spacing) has its bracket, if its array is not empty
    (`"name"` may also stand elsewhere first, e.g. as a string value)."""
    key = b'"%s"' % name.encode()
    at = body.find(key)
    while at >= 0:
        match = _VALUE_START.match(body, at + len(key))
        if match is not None:
            return match.end() - 1
        at = body.find(key, at + len(key))
    return None


_VALUE_START = re.compile(rb"\s*:\s*\[(?!\s*\])")  # a colon, and an array's bracket unless it is empty

PIECE_BYTES = 64 * 1024  # text of one piece of an array, parsed between two turns of the event loop (~0.5 ms)


async def _pieces(
    body: bytes, start: int, depth: int, pause_s: float
) -> AsyncIterator[tuple[list[Any] | None, int]]:
    """The items of the array whose text begins at body[start] (after its bracket), parsed ~`PIECE_BYTES` of
    text at a time, each with the index after the array's text (once the last piece is reached, else -1);
    (None, -1) where the text does not cut or parse that way, then nothing more.

    An item ends with `depth` closing brackets and a comma, the last with `depth` + 1 brackets (its own and
    the array's); a cut inside an item nested deeper than `depth` makes a piece that does not parse.
    """
    item_end, array_end = b"]" * depth + b",", b"]" * (depth + 1)
    while True:
        await asyncio.sleep(pause_s)
        reach = start + PIECE_BYTES
        last = body.find(array_end, start, reach + PIECE_BYTES)
        cut = -1 if 0 <= last < reach else body.find(item_end, reach, reach + PIECE_BYTES)
        if cut < 0 or 0 <= last < cut:
            if last < 0:
                yield None, -1
                return
            text, after = body[start : last + depth], last + depth + 1
        else:
            text, after = body[start : cut + depth], -1
        try:
            rows = orjson.loads(b"[" + text + b"]")
        except orjson.JSONDecodeError:
            yield None, -1
            return
        yield rows, after
        if after >= 0:
            return
        start = cut + depth + 1


async def _parse(
    model: type[BaseModel], body: bytes, arrays: ArrayShapes, pause_s: float = 0.0
) -> BaseModel | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    rest = {name: value for name, value in data.items() if name not in arrays}
    values: dict[str, np.ndarray] = {}
    length = None
    for name, shape in arrays.items():
        if name not in data or data[name] is None:
            if name in data:
                rest[name] = None
            continue
        rows = data[name]
        if type(rows) is not list or not rows or length not in (None, len(rows)):
            return None
        length = len(rows)
        array = await _float_array(rows, shape, pause_s)
        if array is None:
            return None
        rest[name] = []  # the model's own check of everything else, as JSON: an empty list passes its type
        values[name] = array
    return _with_arrays(model, rest, values)


def _with_arrays(
    model: type[BaseModel], rest: dict[str, Any], values: dict[str, np.ndarray]
) -> BaseModel | None:
    """`rest` (the body with each of `values`' fields an empty list) validated as `model`, then holding
    `values`; None if it is not valid."""
    try:
        small = model.model_validate_json(orjson.dumps(rest))
    except (orjson.JSONEncodeError, ValidationError):  # e.g. nested deeper than orjson writes
        return None
    return small.model_copy(update=values)


async def _holds_any(body: bytes, words: tuple[bytes, ...], pause_s: float) -> bool:
    """Whether any of `words` is in `body`, searched `SCAN_BYTES` at a time between turns of the loop."""
    for start in range(0, len(body), SCAN_BYTES):
        if start:
            await asyncio.sleep(pause_s)
        if any(body.find(word, start, start + SCAN_BYTES + len(word) - 1) >= 0 for word in words):
            return True
    return False


async def _float_array(rows: list[Any], shape: tuple[int, ...], pause_s: float) -> np.ndarray | None:
    """`rows` as a float64 array of (len(rows), *shape), `SLICE_FRAMES` rows between turns of the loop;
    None unless every value is a finite int or float (booleans are refused before) in exactly that shape."""
    parts = []
    for start in range(0, len(rows), SLICE_FRAMES):
        if start:
            await asyncio.sleep(pause_s)
        chunk = rows[start : start + SLICE_FRAMES]
        part = _float_rows(chunk, shape)
        if part is None:
            return None
        parts.append(part)
        rows[start : start + SLICE_FRAMES] = [None] * len(chunk)  # its lists freed now, a slice at a time
    return np.concatenate(parts)


def _float_rows(rows: list[Any], shape: tuple[int, ...]) -> np.ndarray | None:
    """`rows` as a float64 array of (len(rows), *shape); None unless every value is a finite int or float."""
    if not rows:
        return None
    try:
        part = np.array(rows)
    except (ValueError, TypeError, OverflowError):  # ragged, or not numbers
        return None
    if part.dtype.kind not in "fi" or part.shape != (len(rows), *shape):
        return None
    part = part.astype(np.float64, copy=False)
    return part if np.isfinite(part).all() else None


class ModelBodyRoute(APIRoute):
    """A route whose one JSON body, a pydantic model, is parsed and validated in one native pass; or, for a
    big body, with the fields named in `arrays` read as float64 numpy arrays in slices (a subclass names them:
    each is a list of items of one shape, all of one length, or null)."""

    arrays: ClassVar[ArrayShapes] = {}

    def pause_s(self, request: Request) -> float:
        """How long a big body's parse leaves the loop free between slices (a subclass decides; 0: a turn)."""
        return 0.0

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        model = None if self.body_field is None else self.body_field.field_info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return handle
        body_model: type[BaseModel] = model

        async def parse_once(request: Request) -> Response:
            return await handle(_ModelBodyRequest(request, body_model, self.arrays, self.pause_s(request)))

        return parse_once


class JSONBytesResponse(Response):
    """A JSON answer already written (`render_sliced`)."""

    media_type = "application/json"


async def render_sliced(content: dict[str, Any], pause_s: float = 0.0) -> bytes:
    """`dumps_json(content)`, each big array written `SLICE_FRAMES` rows at a time
    with the loop free for `pause_s` between slices."""
    fields = []
    for name, value in content.items():
        if isinstance(value, np.ndarray) and value.ndim >= 1 and len(value) > SLICE_FRAMES:
            rows = []
            for start in range(0, len(value), SLICE_FRAMES):
                await asyncio.sleep(pause_s)
                rows.append(dumps_json(value[start : start + SLICE_FRAMES])[1:-1])  # without its brackets
            text = b"[" + b",".join(rows) + b"]"
        else:
            text = dumps_json(value)
        fields.append(dumps_json(name) + b":" + text)
    return b"{" + b",".join(fields) + b"}"


def dumps_json(value: Any) -> bytes:
    """`value` as JSON bytes; numpy arrays (C-contiguous or not) written by orjson natively."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=_contiguous)


def _contiguous(value: Any) -> Any:
    """orjson writes C-contiguous arrays natively and hands anything else here: a copy that is."""
    if isinstance(value, np.ndarray) and not value.flags.c_contiguous:
        return np.ascontiguousarray(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
