"""API v1 over the HTTP server: routes, strict bodies, problem documents, OpenAPI.

Must not import: gateway.http.server internals (only the Request/Response types).
"""

from __future__ import annotations

from gateway.api._factory import create_api
from gateway.api.problems import FieldError, Problem
from gateway.api.routes import ROUTES, Api, Route

__all__ = ["ROUTES", "Api", "FieldError", "Problem", "Route", "create_api"]
