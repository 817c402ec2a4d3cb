"""The ``request-termination`` plugin: answer requests at the gateway with a
fixed status and message or body, or echo the request back (Kong's plugin of
the same name). Bundled; enable it with ``POST /plugins name=request-termination``."""
from .handler import RequestTermination

plugin = RequestTermination()

__all__ = ["plugin", "RequestTermination"]
