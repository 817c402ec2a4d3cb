"""Configuration of the ``response-headers`` plugin.

Maps take ``name -> value`` (JSON ``{"add": {"X-Foo": "bar"}}`` or the form
``config.add[X-Foo]=bar``); Kong's response-transformer spelling, a list of
``"name:value"`` strings (``config.add[]=X-Foo:bar``), is accepted too.
"""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from kong_py.schemas.base import as_list

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: headers that frame the message: changing them would corrupt the response
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


def _as_map(value: Any) -> Any:
    """``["X-Foo:bar", ...]`` (or one such string) -> ``{"X-Foo": "bar"}``."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for item in value:
            if not isinstance(item, str) or ":" not in item:
                raise ValueError(f"invalid value '{item}': expected 'name:value'")
            name, text = item.split(":", 1)
            out[name.strip()] = text.strip()
        return out
    return value


def _check_name(name: str) -> None:
    if not _TOKEN.match(name):
        raise ValueError(f"invalid header name '{name}'")
    if name.lower() in _FRAMING:
        raise ValueError(f"header '{name}' cannot be changed by this plugin")


HeaderNames = Annotated[list[str], BeforeValidator(as_list)]
HeaderMap = Annotated[dict[str, str], BeforeValidator(_as_map)]


class Config(BaseModel):
    """``config`` of a response-headers plugin entity. Applied in this order:
    remove, replace, add, append."""

    model_config = ConfigDict(extra="forbid")

    remove: HeaderNames = Field(default_factory=list,
                                description="Names of headers to remove from the response.")
    replace: HeaderMap = Field(default_factory=dict,
                               description="Headers whose value is replaced, only when the response has them.")
    add: HeaderMap = Field(default_factory=dict,
                           description="Headers set only when the response does not already have them.")
    append: HeaderMap = Field(default_factory=dict,
                              description="Headers added as one more value, whether or not the response has them.")

    @field_validator("remove")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        for name in names:
            _check_name(name)
        return names

    @field_validator("replace", "add", "append")
    @classmethod
    def _pairs(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            _check_name(name)
            if "\r" in value or "\n" in value:
                raise ValueError(f"invalid value for header '{name}': line breaks are not allowed")
        return headers
