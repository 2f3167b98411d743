"""Load generator for the EphemeralChat public API (REST + WebSocket), run as ``python -m benchmarks``.

It drives any server that speaks the documented API, so the same scenarios measure this
server and the reference implementation side by side. See ``benchmarks/README.md``.
"""
