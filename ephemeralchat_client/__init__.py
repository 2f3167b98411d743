"""``ephemeralchat-client``: chat in an EphemeralChat room from a terminal.

Lines typed on stdin are sent to the room; frames from the room are printed as
``[HH:MM:SS] name: text``. Exits 0 when the room ends (closed, expired, owner gone) or on
``/quit`` and end of input; exits 1 with a message saying what to do on any error.

It speaks only the server's public REST and WebSocket API and imports nothing of the
server, so it runs against any EphemeralChat deployment.
"""

from .cli import main

__all__ = ["main"]
