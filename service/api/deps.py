"""Route dependencies, as `Annotated` aliases: the lifting core and the caller's identity."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.errors import Unauthenticated, Unavailable
from service.lifting import LiftingCore, owner_id

_bearer = HTTPBearer(auto_error=False, description="one of POSELIFT_API_KEYS (when configured)")


def get_core(request: Request) -> LiftingCore:
    """The app's lifting core (built in the lifespan)."""
    core: LiftingCore | None = getattr(request.app.state, "core", None)
    if core is None:
        raise Unavailable("the service is starting")
    return core


def get_owner(
    core: Annotated[LiftingCore, Depends(get_core)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The caller's owner id: "" with auth off, else a hash of its valid Bearer key."""
    keys = core.settings.api_keys
    if not keys:
        return ""
    if credentials is None:
        raise Unauthenticated("this server needs an API key: send the header 'Authorization: Bearer <key>'")
    given = credentials.credentials.encode()
    if not any(hmac.compare_digest(given, key.encode()) for key in keys):
        raise Unauthenticated("unknown API key")
    return owner_id(credentials.credentials)


Core = Annotated[LiftingCore, Depends(get_core)]
Owner = Annotated[str, Depends(get_owner)]
