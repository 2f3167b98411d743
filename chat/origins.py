"""Which browser origins may use the API and open room sockets.

Browsers send ``Origin`` on cross-site requests and on every WebSocket handshake; other
clients usually send none, and Origin cannot protect against them anyway. So: no Origin is
allowed, this server's own origin is allowed, and anything else only when configured.
"""

from __future__ import annotations

from urllib.parse import urlsplit


class Origins:
    def __init__(self, allowed: str) -> None:
        entries = {entry.strip().rstrip("/").lower() for entry in allowed.split(",") if entry.strip()}
        self.any = "*" in entries
        self.listed = entries - {"*"}

    def cross_site_allowed(self, origin: str) -> bool:
        """A configured origin other than ours (CORS)."""
        return self.any or origin.rstrip("/").lower() in self.listed

    def allows(self, origin: str | None, host: str | None) -> bool:
        if not origin:
            return True
        if host and urlsplit(origin).netloc.lower() == host.lower():
            return True
        return self.cross_site_allowed(origin)
