"""The Quart-Trio app and what every request may reach through it."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from quart import current_app
from quart_trio import QuartTrio

from .bus import Bus
from .config import Settings
from .metrics import Metrics
from .nursery import Hub
from .rooms import Rooms

if TYPE_CHECKING:
    from .http import Lanes


class ChatApp(QuartTrio):
    """Built by ``chat.http.create_app``; one per server."""

    settings: Settings
    bus: Bus
    hub: Hub
    rooms: Rooms
    metrics: Metrics
    # Served on their own connections (chat.connections) when Hypercorn's Trio worker serves.
    lanes: Lanes


def current() -> ChatApp:
    """The app serving the current request."""
    return cast(ChatApp, current_app)
