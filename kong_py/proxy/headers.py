"""Header rules of a proxy: hop-by-hop removal (RFC 9110 §7.6.1) and forwarding headers."""
from __future__ import annotations

from typing import Iterable

#: hop-by-hop headers, as bytes (lower case) for the ASGI side
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
    b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})


def connection_tokens(value: bytes) -> set[bytes]:
    """Header names listed in a ``Connection`` header (also hop-by-hop)."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def strip_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Drop hop-by-hop headers and those named in ``Connection`` (names are lower case)."""
    headers = list(headers)
    extra: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            extra |= connection_tokens(value)
    if extra:
        return [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in extra]
    return [(n, v) for n, v in headers if n not in HOP_BY_HOP]
