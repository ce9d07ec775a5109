"""The gRPC side of `service.errors`, mapped here once: a domain error ends the RPC with its status code.

Which errors a stream answers in-band instead (a `FrameError` for one frame, the stream stays open) is
`IN_BAND`: bad keypoints (INVALID_ARGUMENT), an old seq never processed (FAILED_PRECONDITION), and writers
racing on the session (ABORTED). None of them changes the session.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import grpc

from service.errors import InvalidInput, SeqConflict, ServiceError, SessionBusy

log = logging.getLogger(__name__)

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
    await context.abort(status_code(error), error.message)
    raise AssertionError("context.abort returned")  # it raises; this line only tells the type checker
