"""AI upstreams: client formats, model routing, provider translation and streaming."""
from .handler import AiProxy

#: a class: the gateway makes one instance per worker
plugin = AiProxy
