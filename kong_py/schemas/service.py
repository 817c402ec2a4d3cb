"""The Service entity: where matched requests go (an upstream's name or a plain host)."""
from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator, model_validator

from .base import Schema, Tags, _as_list, between

Timeout = Annotated[int, between(1, 2147483646)]
StatusList = Annotated[list[Annotated[int, between(100, 599)]], BeforeValidator(_as_list)]


class Service(Schema):
    name: str | None = None
    protocol: Literal["http", "https"] = "http"
    host: str
    port: Annotated[int, between(0, 65535)] = 80
    path: str | None = None
    retries: Annotated[int, between(0, 32767)] = 5
    #: upstream answers that are retried on another target while nothing was sent to the client
    retry_on_statuses: StatusList = Field(default_factory=lambda: [429, 502, 503, 504])
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
        url = str(data.pop("url"))
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url: missing host in url")
        data["protocol"] = parts.scheme
        data["host"] = parts.hostname
        data["port"] = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.path:
            data["path"] = parts.path
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
