"""The gRPC side of `service.errors`, mapped here once: a domain error ends the RPC with its status code.

The status details are the error's message prefixed with its location (`frames[0].seq: ...`, as REST's
`message`), and its trailing metadata carry what REST's body carries beside: `poselift-error-code` (REST's
`code`, e.g. `invalid_input`; gRPC's own codes are coarser) and, when the error has a location,
`poselift-error-location`, the location as JSON text (`["principal_px", 0]`), in the REST bodies' names.

Which errors a stream answers in-band instead (a `FrameError` for one frame, the stream stays open) is
`IN_BAND`: bad keypoints (INVALID_ARGUMENT), an old seq never processed (FAILED_PRECONDITION), and writers
racing on the session (ABORTED). None of them changes the session.
"""

from __future__ import annotations

import json
import logging
from typing import Any, NoReturn

import grpc

from service.errors import InvalidInput, SeqConflict, ServiceError, SessionBusy

log = logging.getLogger(__name__)

CODE_KEY = "poselift-error-code"
LOCATION_KEY = "poselift-error-location"

IN_BAND: tuple[type[ServiceError], ...] = (InvalidInput, SeqConflict, SessionBusy)


def status_code(error: Exception) -> grpc.StatusCode:
    """The status code a domain error carries (`ServiceError.grpc_code`); INTERNAL for anything else."""
    return grpc.StatusCode[error.grpc_code] if isinstance(error, ServiceError) else grpc.StatusCode.INTERNAL


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: Exception, method: str) -> NoReturn:
    """End the RPC for `error`: a domain error with its code and message, anything else INTERNAL (logged).

    Args:
        method: the RPC's name, for the log.
    """
    if isinstance(error, grpc.aio.AbortError):  # already aborted
        raise error
    if not isinstance(error, ServiceError):
        log.error("unhandled error in %s", method, exc_info=error)
        error = ServiceError("internal error; it has been logged")
    await context.abort(status_code(error), error.described, trailing_metadata(error))
    raise AssertionError("context.abort returned")  # it raises; this line only tells the type checker


def trailing_metadata(error: ServiceError) -> tuple[tuple[str, str], ...]:
    """The metadata that carry the error's REST code and its location (JSON text), if it has one."""
    entries = [(CODE_KEY, error.code)]
    if error.location:
        entries.append((LOCATION_KEY, location_text(error)))
    return tuple(entries)


def location_text(error: ServiceError) -> str:
    """The error's location as compact JSON text, "" when it has none."""
    return json.dumps(list(error.location), separators=(",", ":")) if error.location else ""
