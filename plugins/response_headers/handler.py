"""Edits the response headers in ``header_filter``: upstream answers and
gateway/plugin answers (``ctx.exit``) alike."""
from __future__ import annotations

from typing import TYPE_CHECKING

from kong_py.hookspecs import hookimpl

from .schema import Config

if TYPE_CHECKING:
    from kong_py.proxy.context import Context


class ResponseHeaders:
    name = "response-headers"
    PRIORITY = 800  # Kong's response-transformer
    VERSION = "1.0.0"
    Config = Config

    @hookimpl
    def header_filter(self, ctx: "Context", conf: Config) -> None:
        assert ctx.response is not None
        headers = ctx.response.headers
        for name in conf.remove:
            headers.popall(name, None)
        for name, value in conf.replace.items():
            if name in headers:
                headers[name] = value
        for name, value in conf.add.items():
            if name not in headers:
                headers[name] = value
        for name, value in conf.append.items():
            headers.add(name, value)
