"""Putting a credential into the upstream request: a header, a query argument,
a field of the JSON or form body, or a placeholder of the path."""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Iterable
from urllib.parse import quote, quote_plus, unquote_plus

import orjson

from .errors import client_error, config_error

if TYPE_CHECKING:
    from kong_py.proxy.context import Context

#: headers that carry a provider key: a client's own are dropped unless allow_override
CLIENT_AUTH_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")
#: what a client may have signed itself: dropped before the gateway signs (AWS)
CLIENT_SIGNING_HEADERS = ("x-amz-security-token", "x-amz-date", "x-amz-content-sha256")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def strip_client_headers(ctx: "Context", names: Iterable[str]) -> None:
    """Drop the headers of ``names`` the client sent (the target's own configured
    headers stay: they are the operator's, not the client's)."""
    sent = ctx.request.headers
    headers = ctx.upstream_request.headers
    own = {name.lower() for name, _ in ctx.target.headers} if ctx.target is not None else set()
    for name in names:
        if name in sent and name.lower() not in own:
            headers.popall(name, None)


def check_header_value(value: str, field: str) -> str:
    """A value from a vault reference may hold anything: never let it split the request."""
    if _CONTROL.search(value):
        raise config_error(f"credentials.{field} resolves to a value that cannot be sent in a header "
                           "(control characters)", key=f"header:{field}")
    return value


def set_header(ctx: "Context", name: str, value: str, override: bool) -> None:
    headers = ctx.upstream_request.headers
    if override and name in headers:
        return  # the client's own value wins
    headers[name] = value


# -- query -------------------------------------------------------------------

def _pairs(raw: str) -> list[str]:
    return [part for part in raw.split("&") if part]


def _name_of(part: str) -> str:
    return unquote_plus(part.partition("=")[0])


def set_query(ctx: "Context", name: str, value: str, override: bool) -> None:
    """Add or replace ``name=value`` in the query string; other arguments keep
    their exact encoding."""
    upstream = ctx.upstream_request
    parts = _pairs(upstream.query_string)
    if override and any(_name_of(p) == name for p in parts):
        return
    kept = [p for p in parts if _name_of(p) != name]
    kept.append(f"{quote(name, safe='')}={quote(value, safe='')}")
    upstream.query_string = "&".join(kept)


# -- path --------------------------------------------------------------------

def set_path(ctx: "Context", name: str, value: str) -> None:
    """Replace the ``{name}`` placeholder the target's path declares."""
    placeholder = "{" + name + "}"
    upstream = ctx.upstream_request
    target_path = ctx.target.path if ctx.target is not None else None
    if not target_path or placeholder not in target_path or placeholder not in upstream.path:
        raise config_error(f"credentials.param_location is 'path' but the target's path has no "
                           f"{placeholder} placeholder", key=f"path:{name}")
    upstream.path = upstream.path.replace(placeholder, quote(value, safe=""), 1)


# -- body --------------------------------------------------------------------

def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    media = _media_type(content_type)
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def is_form(content_type: str | None) -> bool:
    return _media_type(content_type) == "application/x-www-form-urlencoded"


def body_with(body: bytes, content_type: str | None, name: str, value: str,
              override: bool) -> tuple[bytes, str | None]:
    """The body with ``name`` set to ``value``; and the Content-Type to add, if any.

    A JSON object gets the field (``override``: only when it has none); a form
    gets the argument; an empty body (not a form) becomes a JSON object.
    """
    if not body.strip() and not is_form(content_type):
        return orjson.dumps({name: value}), None if is_json(content_type) else "application/json"
    if is_form(content_type):
        text = body.decode("latin-1")
        parts = _pairs(text)
        if override and any(_name_of(p) == name for p in parts):
            return body, None
        kept = [p for p in parts if _name_of(p) != name]
        kept.append(f"{quote_plus(name)}={quote_plus(value)}")
        return "&".join(kept).encode("latin-1"), None
    if is_json(content_type) or not content_type:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            try:  # what orjson refuses but JSON allows (integers beyond 64 bits)
                data = json.loads(body)
            except ValueError:
                data = None
        if not isinstance(data, dict):
            raise client_error("The request body must be a JSON object for this target's credentials")
        if override and name in data:
            return body, None
        data[name] = value
        try:
            return orjson.dumps(data), None
        except TypeError:
            return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode(), None
    raise client_error("The request body must be JSON or a form (application/x-www-form-urlencoded) "
                       "for this target's credentials")
