"""The operational endpoints: liveness, readiness, metrics and the OpenAPI document.

    GET /healthz        200 {"status": "ok", ...} | 503 {"status": "actor down", ...}
    GET /readyz         200 {"status": "ready"} | 503 {"status": "starting"}, Retry-After: 1
    GET /metrics        Prometheus text format
    GET /openapi.json   the OpenAPI 3.1 document of the route table, built once

None of them takes an API key. Liveness and readiness are asked of the gateway at each
request (``liveness()`` and ``ready`` when it has them: per-actor task alive, per-carrier
bound, store recovered).

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gateway import metrics
from gateway.api import bodies
from gateway.http import Request, Response

if TYPE_CHECKING:
    from gateway.api.routes import Route


class OperationalRoutes:
    """GET /healthz, /readyz, /metrics and /openapi.json.

    Args:
        gateway: ``gateway.app.Gateway`` (``liveness``, ``ready``), or anything with either.
        routes: the route table the OpenAPI document describes (``ROUTES``).
    """

    def __init__(self, gateway: Any, routes: Iterable[Route]) -> None:
        self._gateway = gateway
        from gateway.api.openapi import document

        self._openapi_doc = json.dumps(document(routes), indent=1).encode()

    async def healthz(self, request: Request) -> Response:
        """Liveness: 200 while every actor task runs, else 503 naming what is down."""
        liveness = getattr(self._gateway, "liveness", None)
        if liveness is None:
            return Response(200, b'{"status":"ok"}')
        doc = liveness()  # per-actor task alive, per-carrier bound (gateway.app.Gateway)
        healthy = doc.pop("healthy")
        body = bodies.encode({"status": "ok" if healthy else "actor down", **doc}, bodies.JSON)
        return Response(200 if healthy else 503, body)

    async def readyz(self, request: Request) -> Response:
        """Readiness: 200 once the gateway says it is ready, else 503 with Retry-After."""
        if getattr(self._gateway, "ready", False):
            return Response(200, b'{"status":"ready"}')
        return Response(503, b'{"status":"starting"}', headers=[("retry-after", "1")])

    async def metrics(self, request: Request) -> Response:
        """The Prometheus metrics of this process."""
        return Response(200, metrics.render(), metrics.CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        """The OpenAPI document, encoded once at start."""
        return Response(200, self._openapi_doc)
