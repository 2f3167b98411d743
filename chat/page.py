"""The browser client's page, with Subresource Integrity on every script and stylesheet.

The page names its stylesheet and its entry module with an ``integrity`` digest, and an import
map carries the digest of every other module (browsers check each module they fetch against
it, dynamic imports included). So the page runs only the exact files it was served with:
a cache, a proxy or a CDN in between cannot swap one. The import map is an inline script, which
the page's Content-Security-Policy admits by its own SHA-256 and nothing else inline.

The digests are taken from the files on every request of the page (a few small files), so an
edited file is never refused by a digest older than itself.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import orjson

STATIC = Path(__file__).with_name("static")
STYLESHEET = '<link rel="stylesheet" href="/static/app.css">'
ENTRY = '<script type="module" src="/static/js/main.js"></script>'


def integrity(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def modules() -> dict[str, str]:
    """Every module of the client by its URL, with its integrity digest."""
    return {f"/static/js/{path.name}": integrity(path.read_bytes()) for path in sorted((STATIC / "js").glob("*.js"))}


def render() -> tuple[str, str]:
    """The page, and the CSP source that admits its import map (``'sha256-…'``)."""
    page = (STATIC / "index.html").read_text()
    digests = modules()
    importmap = orjson.dumps({"integrity": digests}).decode()
    css = integrity((STATIC / "app.css").read_bytes())
    if page.count(STYLESHEET) != 1 or page.count(ENTRY) != 1:
        raise RuntimeError("static/index.html must link app.css and js/main.js exactly once, as page.py expects")
    page = page.replace(STYLESHEET, STYLESHEET.replace(">", f' integrity="{css}">'))
    entry = ENTRY.replace("></script>", f' integrity="{digests["/static/js/main.js"]}"></script>')
    page = page.replace(ENTRY, f'<script type="importmap">{importmap}</script>\n  {entry}')
    source = "'sha256-" + base64.b64encode(hashlib.sha256(importmap.encode()).digest()).decode() + "'"
    return page, source
