"""Header names and values that entities put on upstream requests.

A header map goes out as ``name: value`` lines, so a name with a space or a
value with CR/LF would let a configuration split the request. Names must be
RFC 9110 tokens; values must not hold control characters (HTAB aside).
"""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from .base import as_list

__all__ = ["HeaderListMap", "HeaderMap", "HeaderName", "HeaderValue",
           "check_header_name", "check_header_value"]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SHOWN = 40


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def check_header_name(name: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid header name {_shown(name)}: expected a token "
                         "(letters, digits and !#$%&'*+-.^_`|~, no spaces)")
    return name


def check_header_value(value: str, name: str | None = None) -> str:
    """Values may be secrets (API keys in headers): the message never shows them."""
    if _CONTROL.search(value):
        what = "header value" if name is None else f"value for header {_shown(name)}"
        raise ValueError(f"invalid {what}: must not contain CR, LF, NUL or other control characters")
    return value


def _check_map(headers: dict[str, Any] | None) -> dict[str, Any] | None:
    for name, values in (headers or {}).items():
        check_header_name(name)
        for value in values if isinstance(values, list) else [values]:
            check_header_value(value, name)
    return headers


HeaderName = Annotated[str, AfterValidator(check_header_name)]
HeaderValue = Annotated[str, AfterValidator(check_header_value)]
HeaderMap = Annotated[dict[str, str] | None, AfterValidator(_check_map)]
HeaderListMap = Annotated[dict[str, Annotated[list[str], BeforeValidator(as_list)]] | None, AfterValidator(_check_map)]
