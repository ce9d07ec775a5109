"""The service's error vocabulary: domain exceptions that both transports map, each exactly once.

Every exception carries a stable machine-readable `code`, the HTTP status the REST API answers with, the
gRPC status code name the streaming API uses, and where it has one, a `location`: the path of the offending
part of the request, e.g. `("frames", 3, "keypoints", 5)` or `("width",)`. Locations name the fields of the
REST JSON bodies whatever the transport (docs/rest.md, "Errors"); each transport formats them (REST:
`service.api.handlers`, the body `{"error": {"code", "message", "location"?}}`; gRPC: `service.rpc.status`,
trailing metadata and `FrameError.location`). Anything that is not a `ServiceError` is a bug: 500 with a
generic message, and the traceback goes to the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

Location = tuple[str | int, ...]
"""A path into the request: field names (str) and list indices (int), outermost first; () is no location."""


def format_location(location: Sequence[str | int]) -> str:
    """A location as people read it: `frames[3].keypoints[5]`, `principal_px[0]`, `width`."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class ServiceError(Exception):
    """Base of every error a client may see. HTTP 500, gRPC INTERNAL unless a subclass says otherwise."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    grpc_code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, location: Sequence[str | int] = ()):
        """
        Args:
            message: what is wrong, for people, without the location (the transports prefix it).
            location: the path of the offending part of the request, in the REST bodies' field names.
        """
        self.message = message
        self.location: Location = tuple(location)
        super().__init__(self.described)

    @property
    def described(self) -> str:
        """The message prefixed with its location (`frames[1].seq: ...`), as both transports send it."""
        return f"{format_location(self.location)}: {self.message}" if self.location else self.message

    def relocated(self, location: Sequence[str | int]) -> ServiceError:
        """The same error at another location (its class and message kept), for a transport that frames the
        request differently from the core (a stream's frame is one message, a REST batch a list)."""
        error = ServiceError.__new__(type(self))
        ServiceError.__init__(error, self.message, location)
        return error

    def to_body(self) -> dict[str, dict[str, Any]]:
        """The JSON error body shared by every transport that has one; `location` only when there is one."""
        detail: dict[str, Any] = {"code": self.code, "message": self.described}
        if self.location:
            detail["location"] = list(self.location)
        return {"error": detail}


class InvalidInput(ServiceError):
    """The request is well-formed but its values are unusable (shape, NaN, layout, size, fps).

    HTTP 422, gRPC INVALID_ARGUMENT.
    """

    code = "invalid_input"
    http_status = 422
    grpc_code = "INVALID_ARGUMENT"


class MalformedRequest(ServiceError):
    """The request cannot be parsed at all (not JSON, wrong types). HTTP 400, gRPC INVALID_ARGUMENT."""

    code = "malformed_request"
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class Unauthenticated(ServiceError):
    """API keys are configured and the request has none, or an unknown one. HTTP 401, gRPC UNAUTHENTICATED."""

    code = "unauthenticated"
    http_status = 401
    grpc_code = "UNAUTHENTICATED"


class NotFound(ServiceError):
    """No such resource (route, or a session that expired, was closed, or belongs to another key).

    HTTP 404, gRPC NOT_FOUND.
    """

    code = "not_found"
    http_status = 404
    grpc_code = "NOT_FOUND"


class SessionNotFound(NotFound):
    """The session does not exist for this caller. HTTP 404, gRPC NOT_FOUND.

    Another key's session answers the same as a missing one, so a key cannot even learn that an id exists.
    """

    code = "session_not_found"

    def __init__(self, session_id: str):
        shown = session_id if len(session_id) <= 64 else session_id[:64] + "..."
        super().__init__(f"no session {shown!r} (it expired, was closed, or was never created with this key)")


class MethodNotAllowed(ServiceError):
    """The route exists but not with this HTTP method. HTTP 405, gRPC UNIMPLEMENTED."""

    code = "method_not_allowed"
    http_status = 405
    grpc_code = "UNIMPLEMENTED"


class SeqConflict(ServiceError):
    """A frame's seq is at or before the session's last seq and its pose is not held.

    HTTP 409, gRPC FAILED_PRECONDITION.
    """

    code = "seq_conflict"
    http_status = 409
    grpc_code = "FAILED_PRECONDITION"


class SessionBusy(ServiceError):
    """Writers kept racing on one session past the retry budget. HTTP 409, gRPC ABORTED."""

    code = "session_busy"
    http_status = 409
    grpc_code = "ABORTED"


class SessionIncompatible(ServiceError):
    """The session was opened on a model with another window than this replica's (a rolling upgrade).

    HTTP 409, gRPC FAILED_PRECONDITION: retrying here never helps; a replica with the session's model, or a
    new session, does.
    """

    code = "session_incompatible"
    http_status = 409
    grpc_code = "FAILED_PRECONDITION"


class PayloadTooLarge(ServiceError):
    """The body or the frame count of one request is over its limit. HTTP 413, gRPC RESOURCE_EXHAUSTED."""

    code = "payload_too_large"
    http_status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class TooManySessions(ServiceError):
    """The in-process store is full. HTTP 429, gRPC RESOURCE_EXHAUSTED."""

    code = "too_many_sessions"
    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"


class Unavailable(ServiceError):
    """A dependency is down or the service is not ready yet; retry later. HTTP 503, gRPC UNAVAILABLE."""

    code = "unavailable"
    http_status = 503
    grpc_code = "UNAVAILABLE"


class StoreUnavailable(Unavailable):
    """The session store (Redis) did not answer within its time bound. HTTP 503, gRPC UNAVAILABLE."""

    code = "store_unavailable"
