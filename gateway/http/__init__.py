"""The HTTP/1.1 ingress server: a sans-IO request reader on httptools (llhttp) and a trio driver.

Must not import: gateway.api (the application is a callable passed to the server).
"""

from __future__ import annotations

from gateway.http._connection import problem_response
from gateway.http._protocol import (
    BodyBuffer,
    BodyIncomplete,
    HttpError,
    ReaderLimits,
    Request,
    RequestReader,
    Response,
)
from gateway.http.server import App, HttpServer, ServerLimits

__all__ = [
    "App",
    "BodyBuffer",
    "BodyIncomplete",
    "HttpError",
    "HttpServer",
    "ReaderLimits",
    "Request",
    "RequestReader",
    "Response",
    "ServerLimits",
    "problem_response",
]
