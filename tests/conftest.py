"""Shared fixtures: a real gateway on loopback ports and real upstream servers."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from kong_py.config import load_config
from kong_py.mock_llm import MockLLM
from kong_py.server import RunningGateway
from support import form_pairs, free_port


@dataclass
class Gateway:
    """A running in-process gateway and a client for it."""

    running: RunningGateway
    admin_url: str
    proxy_url: str
    session: aiohttp.ClientSession

    @property
    def worker(self) -> Any:
        return self.running.worker

    async def admin(self, method: str, path: str, data: dict[str, Any] | None = None,
                    encoding: str = "json") -> tuple[int, Any]:
        """Call the Admin API with ``data`` as JSON or as a form; (status, decoded body)."""
        kwargs: dict[str, Any] = {}
        if data is not None:
            if encoding == "json":
                kwargs["json"] = data
            else:
                kwargs["data"] = form_pairs(data)
        async with self.session.request(method, self.admin_url + path, **kwargs) as resp:
            text = await resp.text()
            try:
                body = await resp.json(content_type=None) if text else None
            except ValueError:
                body = text
            return resp.status, body

    async def proxy(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        async with self.session.request(method, self.proxy_url + path, allow_redirects=False, **kwargs) as resp:
            return resp.status, resp.headers.copy(), await resp.read()


@pytest.fixture
async def start_gateway(tmp_path: Any) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    """Factory: ``await start_gateway(**settings)`` starts a gateway; all are stopped at teardown."""
    started: list[Gateway] = []

    async def start(prefix: Any = None, **settings: Any) -> Gateway:
        proxy_port, admin_port = free_port(), free_port()
        values = {"prefix": str(prefix or tmp_path / f"gw{len(started)}"),
                  "proxy_listen": f"127.0.0.1:{proxy_port}", "admin_listen": f"127.0.0.1:{admin_port}",
                  "log_level": "warn", "db_update_frequency": 0.5}
        values.update(settings)
        runtime = values.pop("runtime", None)
        node = values.pop("node", None)
        config = load_config(env={}, **values)
        running = RunningGateway(config, runtime=runtime, node=node)
        await running.start()
        session = aiohttp.ClientSession()
        gateway = Gateway(running, f"http://127.0.0.1:{admin_port}", f"http://127.0.0.1:{proxy_port}", session)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        await gateway.session.close()
        if gateway.running.worker is not None and gateway.running._task is not None and not gateway.running._task.done():
            await gateway.running.stop()


@pytest.fixture
async def gateway(start_gateway: Callable[..., Awaitable[Gateway]]) -> Gateway:
    return await start_gateway()


@dataclass
class Upstream:
    """A small real HTTP server that says who it is and counts requests."""

    name: str
    port: int
    runner: web.AppRunner
    hits: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


UPSTREAM = web.AppKey("upstream", Upstream)
HANDLER = web.AppKey("handler", object)


async def _echo(request: web.Request) -> web.StreamResponse:
    upstream: Upstream = request.app[UPSTREAM]
    upstream.hits += 1
    body = await request.read()
    record = {"method": request.method, "path": request.path_qs, "headers": dict(request.headers),
              "body": body.decode("utf-8", "replace")}
    upstream.requests.append(record)
    handler = request.app.get(HANDLER)
    if handler is not None:
        return await handler(request, upstream)
    return web.json_response({"upstream": upstream.name, **record})


@pytest.fixture
async def upstreams() -> AsyncIterator[Callable[..., Awaitable[Upstream]]]:
    """Factory: ``await upstreams("a", handler=None)`` starts an echo server on loopback.

    ``handler(request, upstream)`` may replace the default JSON echo.
    """
    runners: list[web.AppRunner] = []

    async def start(name: str, handler: Callable[..., Awaitable[web.StreamResponse]] | None = None) -> Upstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", _echo)
        port = free_port()
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        upstream = Upstream(name, port, runner)
        app[UPSTREAM] = upstream
        if handler is not None:
            app[HANDLER] = handler
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        runners.append(runner)
        return upstream

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def start_mock_llm() -> AsyncIterator[Callable[..., Awaitable[MockLLM]]]:
    """Factory: ``await start_mock_llm(**settings)`` starts a mock LLM server on a free loopback
    port (settings: the fields of ``kong_py.mock_llm.Behaviour``); all are stopped at teardown."""
    started: list[MockLLM] = []

    async def start(**settings: Any) -> MockLLM:
        mock = await MockLLM.start("127.0.0.1", 0, **settings)
        started.append(mock)
        return mock

    yield start
    for mock in started:
        await mock.stop()


@pytest.fixture
async def mock_llm(start_mock_llm: Callable[..., Awaitable[MockLLM]]) -> MockLLM:
    """A mock LLM server (OpenAI, Anthropic, Gemini, Bedrock, Azure paths) on a free loopback
    port: ``mock_llm.url``, ``mock_llm.address`` (a target), ``mock_llm.requests``."""
    return await start_mock_llm()
