"""The Service entity: where matched requests go (an upstream's name or a plain host)."""
from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator, model_validator

from .base import Schema, Tags, as_list, between

Timeout = Annotated[int, between(1, 2147483646)]
StatusList = Annotated[list[Annotated[int, between(100, 599)]], BeforeValidator(as_list)]


def _url_fields(url: str) -> dict[str, Any]:
    """The fields Kong's ``url`` shorthand stands for. Parts that are missing or
    wrong are left to the fields' own checks, so errors name the field (host,
    port, protocol) as Kong's do; a url without a path clears ``path``."""
    parts = urlsplit(url)
    fields: dict[str, Any] = {"path": parts.path or None}
    if parts.scheme:
        fields["protocol"] = parts.scheme
    if parts.hostname:
        fields["host"] = parts.hostname
    try:
        port: Any = parts.port
    except ValueError:  # not a number or out of range
        port = parts.netloc.rpartition(":")[2]
        port = int(port) if port.isdigit() else port
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme)
    if port is not None:
        fields["port"] = port
    return fields


class Service(Schema):
    name: str | None = None
    protocol: Literal["http", "https"] = "http"
    host: str
    port: Annotated[int, between(0, 65535)] = 80
    path: str | None = None
    retries: Annotated[int, between(0, 32767)] = 5
    #: upstream answers that are retried on another target while nothing was sent to the client
    retry_on_statuses: StatusList = Field(default_factory=lambda: [429, 502, 503, 504])
    #: also replay POST and PATCH after a timeout, a reset or a 502/504 (they may have been processed)
    retry_non_idempotent: bool = False
    connect_timeout: Timeout = 60000
    write_timeout: Timeout = 60000
    read_timeout: Timeout = 60000
    tls_verify: bool | None = None
    enabled: bool = True
    tags: Tags = None

    @model_validator(mode="before")
    @classmethod
    def _expand_url(cls, data: Any) -> Any:
        """``url`` is Kong's shorthand for protocol, host, port and path."""
        if not isinstance(data, dict) or data.get("url") is None:
            if isinstance(data, dict):
                data = {k: v for k, v in data.items() if k != "url"}
            return data
        data = dict(data)
        data.update(_url_fields(str(data.pop("url"))))
        return data

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("should start with: /")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not all(c.isalnum() or c in "-._~" for c in value):
            raise ValueError("invalid value '%s': it must only contain alphanumeric and '., -, _, ~' characters" % value)
        return value
