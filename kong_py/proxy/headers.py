"""Hop-by-hop headers (RFC 9110 §7.6.1): removed in both directions by the proxy."""
from __future__ import annotations

#: hop-by-hop headers, as bytes (lower case) for the ASGI side
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
    b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})


def connection_tokens(value: bytes) -> set[bytes]:
    """Header names listed in a ``Connection`` header (also hop-by-hop)."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def hop_by_hop(raw_headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The lower-case names to drop from these headers: the fixed set plus any
    named in their ``Connection`` header."""
    drop = HOP_BY_HOP
    for name, value in raw_headers:
        if name.lower() == b"connection":
            drop = drop | connection_tokens(value)
    return drop
