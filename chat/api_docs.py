"""The API docs page, /docs (Swagger UI), with its script and stylesheet served by the app.

quart-schema's page loads them from a CDN by default, which leaves /docs blank on a machine
without internet. chat/static/swagger-ui/ holds them instead: Swagger UI's own distribution
(the swagger-ui-dist package, version below), unchanged, with its licence and notices.
"""

from __future__ import annotations

from quart import Quart

SWAGGER_UI_VERSION = "5.35.0"
ASSETS = "swagger-ui"  # inside the app's static folder

# Keyword arguments for QuartSchema: Swagger UI only. ReDoc and Scalar would each need a
# bundle of their own; /openapi.json serves any other viewer.
UI_PATHS: dict[str, str | None] = {"swagger_ui_path": "/docs", "redoc_ui_path": None, "scalar_ui_path": None}


def install(app: Quart) -> None:
    """Point quart-schema's docs page at the bundled files (its views read these per request)."""
    base = f"{app.static_url_path}/{ASSETS}"
    app.config["QUART_SCHEMA_SWAGGER_JS_URL"] = f"{base}/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}"
    app.config["QUART_SCHEMA_SWAGGER_CSS_URL"] = f"{base}/swagger-ui.css?v={SWAGGER_UI_VERSION}"
