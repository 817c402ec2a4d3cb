"""Credential injection: each target's own key, token or signature on the
requests sent to it (headers, query, body or path parameters, Azure and Google
Cloud tokens, AWS SigV4), with Kong-style vault references. Bundled, always on."""
from .handler import Credentials

#: a class: the gateway makes one instance per worker (token caches of its own)
plugin = Credentials
