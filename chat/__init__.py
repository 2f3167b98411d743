"""EphemeralChat: short-lived chat rooms over REST and WebSocket, on Trio."""

__version__ = "0.1.0"
