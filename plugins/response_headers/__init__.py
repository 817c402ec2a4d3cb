"""The ``response-headers`` plugin: remove, replace, add and append response
headers in ``header_filter`` (the header part of Kong's response-transformer).
A second example plugin, for a phase other than ``access``."""
from .handler import ResponseHeaders

plugin = ResponseHeaders()

__all__ = ["plugin", "ResponseHeaders"]
