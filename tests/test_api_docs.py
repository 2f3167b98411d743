"""/docs works without internet: every file the page loads comes from the server itself."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from chat.api_docs import SWAGGER_UI_VERSION

from .support import running_app

EXPECTED_TYPES = {"script": "text/javascript", "stylesheet": "text/css"}


class Assets(HTMLParser):
    """The scripts and stylesheets a page references, as (kind, URL)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.found.append(("script", attributes["src"] or ""))
        if tag == "link" and "stylesheet" in (attributes.get("rel") or "").split() and attributes.get("href"):
            self.found.append(("stylesheet", attributes["href"] or ""))


async def test_the_docs_page_loads_only_files_the_server_serves() -> None:
    async with running_app() as server, server.client() as http:
        page = await http.get("/docs")
        assert page.status_code == 200 and "/openapi.json" in page.text
        parser = Assets()
        parser.feed(page.text)
        assert {kind for kind, _ in parser.found} == {"script", "stylesheet"}, parser.found
        for kind, reference in parser.found:
            url = urljoin(server.url + "/docs", reference)
            assert urlsplit(url).netloc == urlsplit(server.url).netloc, f"/docs loads {reference} from another host"
            asset = await http.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-type"].startswith(EXPECTED_TYPES[kind]), (url, asset.headers["content-type"])
            assert len(asset.content) > 100_000, f"{url} is not the Swagger UI {SWAGGER_UI_VERSION} bundle"
        assert (await http.get("/openapi.json")).json()["info"]["title"] == "EphemeralChat"


async def test_only_the_swagger_ui_docs_page_is_offered() -> None:
    """ReDoc and Scalar pages would load from a CDN; they are not served at all."""
    async with running_app() as server, server.client() as http:
        for path in ("/redocs", "/scalar"):
            assert (await http.get(path)).status_code == 404, path
