"""Response headers: CORS for configured origins, and the security headers of every page."""

from __future__ import annotations

from quart import Quart, Response, request

from .origins import Origins

# The browser client loads only its own files and talks only to this server.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def content_security_policy(*inline_scripts: str) -> str:
    """The policy, also admitting the inline scripts given by their hash sources ('sha256-…')."""
    return CONTENT_SECURITY_POLICY.replace("script-src 'self'", " ".join(("script-src 'self'", *inline_scripts)))
# The API docs page (quart-schema's) starts Swagger UI with an inline script, so it gets no CSP of ours.
DOCS_PATHS = ("/docs",)
CORS_MAX_AGE_SECONDS = 600


# Every answer's, whatever it is: no type sniffing, and room tokens and passwords travel in
# URLs, so never leak them in a Referer.
ALWAYS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"))


def cors(origins: Origins, origin: str | None, method: str) -> list[tuple[str, str]]:
    """The CORS headers of an answer to a request from ``origin`` (none for our own pages)."""
    if not origin or not origins.cross_site_allowed(origin):
        return []
    headers = [("Access-Control-Allow-Origin", "*" if origins.any else origin), ("Vary", "Origin")]
    if method == "OPTIONS":
        headers += [
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            ("Access-Control-Allow-Headers", "Content-Type, Authorization"),
            ("Access-Control-Max-Age", str(CORS_MAX_AGE_SECONDS)),
        ]
    return headers


def install(app: Quart, origins: Origins) -> None:
    @app.after_request
    async def add_headers(response: Response) -> Response:
        headers = response.headers
        headers.update(ALWAYS)
        if response.mimetype == "text/html" and request.path not in DOCS_PATHS:
            headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            headers["X-Frame-Options"] = "DENY"
        if request.path == "/" or request.path.startswith("/static/"):
            # Revalidate, so an upgrade of the client reaches browsers at once.
            headers["Cache-Control"] = "no-cache"
        headers.update(cors(origins, request.headers.get("Origin"), request.method))
        return response
