"""The proxy's own HTTP/1.1 server: ASGI on httptools, with intake limits and timeouts.

uvicorn's httptools protocol has no limit on request heads, no header, body or
idle timeouts and no cap on connections, merges chunked trailers into the
request's headers, and tells an application nothing when a body arrives
incomplete. The proxy needs all of that at its edge, so it runs on this
server (``docs/architecture.md`` says why); the Admin API stays on uvicorn.
"""
from .protocol import Limits
from .server import HttpServer

__all__ = ["HttpServer", "Limits"]
