"""The Route entity: which requests match (paths, hosts, methods, headers)."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, field_validator

from .base import Schema, StrList, Tags, as_list

Protocol = Literal["http", "https"]


class Route(Schema):
    name: str | None = None
    protocols: Annotated[list[Protocol], BeforeValidator(as_list)] = ["http", "https"]
    methods: StrList | None = None
    hosts: StrList | None = None
    paths: StrList | None = None
    headers: dict[str, Annotated[list[str], BeforeValidator(as_list)]] | None = None
    strip_path: bool = True
    preserve_host: bool = False
    regex_priority: int = 0
    path_handling: Literal["v0", "v1"] = "v0"
    https_redirect_status_code: Literal[426, 301, 302, 307, 308] = 426
    request_buffering: bool = True
    response_buffering: bool = True
    service: dict[str, Any] | None = None
    tags: Tags = None

    @field_validator("paths")
    @classmethod
    def _paths(cls, paths: list[str] | None) -> list[str] | None:
        for path in paths or ():
            if path.startswith("~"):
                try:
                    re.compile(path[1:])
                except re.error as exc:
                    raise ValueError(f"invalid regex: '{path[1:]}' ({exc})") from None
            elif not path.startswith("/"):
                raise ValueError("should start with: / (fixed path) or ~/ (regex path)")
        return paths

    @field_validator("methods")
    @classmethod
    def _methods(cls, methods: list[str] | None) -> list[str] | None:
        for method in methods or ():
            if not method.isalpha() or not method.isupper():
                raise ValueError(f"invalid value '{method}': expected an uppercase HTTP method")
        return methods

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if headers is None:
            return None
        if any(name.lower() == "host" for name in headers):
            raise ValueError("cannot contain 'host' header, which must be specified in the 'hosts' attribute")
        return {name.lower(): values for name, values in headers.items()}

    def entity_errors(self) -> dict[str, Any]:
        if not (self.methods or self.hosts or self.paths or self.headers):
            return {"@entity": ["must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http' or 'https'"]}
        return {}


