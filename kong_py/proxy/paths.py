"""Request paths as the router and the upstream see them: one canonical form.

Routing on the path as sent would let ``/public/../internal``,
``/public/%2e%2e/internal`` or ``//internal`` match a route for ``/public``
(and skip the plugins of ``/internal``) on their way to an upstream that reads
them as ``/internal``. So, as Kong and nginx do, the path is normalised
before routing and sent upstream normalised:

1. percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2:
   ``%2e`` is ``.``, ``%41`` is ``A``), other escapes kept, in upper case;
2. dot segments are removed (RFC 3986 §5.2.4) and repeated slashes merged
   (nginx's ``merge_slashes``);
3. a path that climbs above the root is refused, as is one whose decoded form
   still has dot segments (hidden behind an encoded slash, ``..%2f``): the
   router and the upstream could read them differently.
"""
from __future__ import annotations

import re
from urllib.parse import unquote

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class InvalidPath(ValueError):
    """A request path the gateway refuses (answered 400)."""


def _unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _remove_dots(path: str) -> str:
    stack: list[str] = []
    parts = path.split("/")[1:]
    last = len(parts) - 1
    for i, segment in enumerate(parts):
        if segment == "..":
            if not stack:
                raise InvalidPath("the path climbs above the root")
            stack.pop()
            if i == last:
                stack.append("")
        elif segment == ".":
            if i == last:
                stack.append("")
        elif segment or i == last:
            stack.append(segment)
    return "/" + "/".join(stack)


def normalize(raw: bytes) -> tuple[str, bytes]:
    """(decoded path to route on, encoded path to send upstream) of a raw request path."""
    text = raw.decode("latin-1")
    if not text.startswith("/"):
        return (unquote(text) if "%" in text else text), raw  # "*" of OPTIONS, an absolute URL's oddities
    if "%" in text:
        text = _ESCAPE.sub(_unreserved, text)
    encoded = _remove_dots(text)
    decoded = unquote(encoded) if "%" in encoded else encoded
    if decoded is not encoded and any(s in ("..", ".") for s in decoded.split("/")):
        raise InvalidPath("the path hides a dot segment behind an encoded slash")
    return decoded, encoded.encode("latin-1")
