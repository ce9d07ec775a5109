"""The REST API: FastAPI routes that decode, call `service.lifting.LiftingCore`, and encode."""

from service.api.app import create_app

__all__ = ["create_app"]
