"""A room's WebSocket, from the wire up to one member's session.

- ``wire``: server frames as bytes, framed once per broadcast.
- ``hypercorn_adapter``: our adapter to the Hypercorn connection under a socket (batched and
  synchronous writes, cutting a stuck peer); relies on Hypercorn internals, pinned and tested.
- ``socket``: the WebSocket as ASGI gives it, with the adapter's fast paths when present.
- ``member``: one local member: straight writes while it keeps up, a bounded outbox while it lags.
- ``pings``: one task pings every local member.
- ``session``: one member's socket from accept to close; talks to ``chat.rooms`` (what the
  room hears) and ``chat.nursery`` (what the member gets), never to the bus.

``wire``, ``member`` and ``pings`` are used by ``chat.nursery`` too; ``session`` is the only
module here that imports the rest of the app.
"""
