"""The routes for people and machines that run the server: the browser client's page,
liveness, readiness and metrics."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_response

from . import page
from .app import current
from .headers import content_security_policy
from .payloads import json_response
from .schemas import Health, Readiness

operations = Blueprint("operations", __name__)


@operations.get("/")
async def index() -> Response:
    """The browser client, its scripts and stylesheet pinned by their digests (chat/page.py)."""
    html, importmap = page.render()
    response = Response(html, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = content_security_policy(importmap)
    return response


@operations.get("/healthz")
@document_response(Health, 200)
async def healthz() -> Response:
    return json_response({"status": "ok"})


@operations.get("/metrics")
async def metrics_endpoint() -> Response:
    """Prometheus metrics of this instance."""
    body, content_type = current().metrics.render()
    return Response(body, content_type=content_type)


@operations.get("/readyz")
@document_response(Readiness, 200)
@document_response(Readiness, 503)
async def readyz() -> Response:
    app = current()
    ready = app.bus.ready and not app.hub.draining
    return json_response({"ready": ready}, 200 if ready else 503)
