"""A gateway with one service routed at ``/api`` onto a raw-logging upstream."""
from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from raw import RawUpstream


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[..., Awaitable[RawUpstream]]]:
    started: list[RawUpstream] = []

    async def start(**options: Any) -> RawUpstream:
        upstream = await RawUpstream(**options).start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        await upstream.stop()


@pytest.fixture
async def edge(start_gateway, raw_upstream) -> Callable[..., Awaitable[tuple[Any, RawUpstream, int]]]:
    """``gateway, upstream, proxy_port = await edge(**settings)``."""
    async def make(upstream_options: dict[str, Any] | None = None, service: dict[str, Any] | None = None,
                   **settings: Any) -> tuple[Any, RawUpstream, int]:
        gateway = await start_gateway(**settings)
        upstream = await raw_upstream(**(upstream_options or {}))
        status, _ = await gateway.admin("POST", "/services", {"name": "api", "url": f"http://{upstream.address}",
                                                              "read_timeout": 2000, **(service or {})})
        assert status == 201
        status, _ = await gateway.admin("POST", "/services/api/routes", {"paths": ["/api"]})
        assert status == 201
        port = int(gateway.proxy_url.rsplit(":", 1)[1])
        return gateway, upstream, port
    return make
