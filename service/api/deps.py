"""Route dependencies, as `Annotated` aliases: the lifting core and the caller's identity."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.errors import Unavailable
from service.lifting import LiftingCore

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
    return core.authenticate(None if credentials is None else credentials.credentials)


Core = Annotated[LiftingCore, Depends(get_core)]
Owner = Annotated[str, Depends(get_owner)]
