"""The mock server: one aiohttp app serving every provider, recording every request.

Each request goes through the same steps, whichever provider it addresses, so a control
header means the same everywhere: record it; wait ``latency_ms``; reset or hang when asked;
answer a forced ``status`` in the provider's error shape; check the key when the process
has one; then let the provider handler answer (and cut a non-streamed answer short when
``reset_after_chunks`` asks for it).
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import socket
import sys
import urllib.parse
from types import TracebackType
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from kong_py.mock_llm.anthropic import ANTHROPIC
from kong_py.mock_llm.bedrock import BEDROCK
from kong_py.mock_llm.behaviour import Behaviour, ControlError
from kong_py.mock_llm.gemini import GEMINI
from kong_py.mock_llm.openai import AZURE, OPENAI
from kong_py.mock_llm.openai import error as openai_error
from kong_py.mock_llm.recording import RecordedRequest
from kong_py.mock_llm.wire import (Aborted, ApiError, Ended, Call, Handler, Provider, default_message, hang,
                                   json_response, reset, send_partial)

PROVIDERS: tuple[Provider, ...] = (OPENAI, AZURE, ANTHROPIC, GEMINI, BEDROCK)
#: where the middleware leaves a request's record for its endpoint (RequestKey: aiohttp >= 3.12)
RECORD: Any = (web.RequestKey("mock_llm.record", RecordedRequest) if hasattr(web, "RequestKey")
               else "mock_llm.record")
MAX_BODY = 64 * 1024 * 1024  # images as base64 make large bodies
SHUTDOWN_TIMEOUT = 1.0       # seconds streams in progress get when the mock stops
RECORD_LIMIT = 10_000        # requests kept (the latest): a long benchmark must not eat the memory

log = logging.getLogger("kong_py.mock_llm")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class MockLLM:
    """An imitation of LLM provider APIs on a local port, for tests and trials.

    ``async with MockLLM(port=0, latency_ms=20) as mock: ... mock.url ... mock.requests``
    or ``mock = await MockLLM.start(); ...; await mock.stop()``. Keyword settings are the
    fields of ``Behaviour``; ``mock.behaviour`` may be changed while it runs. Only the
    latest ``record_limit`` requests are kept.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, behaviour: Behaviour | None = None,
                 *, access_log: bool = False, record_limit: int = RECORD_LIMIT, **settings: Any) -> None:
        self.host = host
        self._wanted_port = port
        self.behaviour = behaviour if behaviour is not None else Behaviour()
        if settings:
            self.behaviour.update(**settings)
        self.requests: list[RecordedRequest] = []
        self.record_limit = record_limit  # the most recent requests kept (0: none)
        self._access_log = access_log
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closing: asyncio.Event | None = None

    # -- life cycle ---------------------------------------------------------------------

    @classmethod
    async def start(cls, host: str = "127.0.0.1", port: int = 0, behaviour: Behaviour | None = None,
                    **settings: Any) -> MockLLM:
        """A new mock, already listening."""
        mock = cls(host, port, behaviour, **settings)
        await mock.serve()
        return mock

    async def serve(self) -> None:
        """Bind and start answering (returns at once)."""
        if self._runner is not None:
            raise RuntimeError("the mock is already running")
        self._closing = asyncio.Event()
        sock = _bind(self.host, self._wanted_port)
        self._port = sock.getsockname()[1]
        runner = web.AppRunner(self.app(), handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT,
                               access_log=log if self._access_log else None,
                               access_log_format='%r %s %b bytes %Tf s')
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening; hanging answers end with a reset, streams get a moment to finish."""
        if self._runner is None:
            return
        assert self._closing is not None
        self._closing.set()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> MockLLM:
        await self.serve()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # -- what tests use -------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the mock is not running")
        return self._port

    @property
    def address(self) -> str:
        """``host:port``, as a Kong target is written."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def clear(self) -> None:
        """Forget the recorded requests."""
        self.requests.clear()

    # -- the app --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record], client_max_size=MAX_BODY)
        app.router.add_get("/__mock/requests", self._list_requests)
        app.router.add_delete("/__mock/requests", self._clear_requests)
        app.router.add_get("/__mock/behaviour", self._get_behaviour)
        app.router.add_route("PATCH", "/__mock/behaviour", self._set_behaviour)
        app.router.add_put("/__mock/behaviour", self._set_behaviour)
        app.router.add_get("/__mock/health", self._health)
        for provider in PROVIDERS:
            for method, path, handler in provider.routes:
                app.router.add_route(method, path, self._endpoint(provider, handler))
        return app

    @web.middleware
    async def _record(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path.startswith("/__mock/"):
            return await handler(request)
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        record = RecordedRequest.of(request.method, request.path, request.query, request.headers, raw, body)
        if self.record_limit > 0:
            self.requests.append(record)
            if len(self.requests) > self.record_limit:
                del self.requests[0]
        request[RECORD] = record
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return openai_error(ApiError(404, f"Invalid URL ({request.method} {request.path})"))
        except web.HTTPMethodNotAllowed:
            return openai_error(ApiError(405, f"Method not allowed ({request.method} {request.path})"))

    def _endpoint(self, provider: Provider, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            record: RecordedRequest = request[RECORD]
            chosen = _variant(provider, request)
            _describe(record, chosen, request)
            try:
                controls = self.behaviour.for_request(request.headers)
            except ControlError as exc:
                return chosen.error(ApiError(400, str(exc)))
            assert self._closing is not None
            call = Call(request, controls, record.body, record, self._closing)
            try:
                return await self._answer(chosen, handler, call)
            except ApiError as exc:
                return _error(chosen, exc, controls)
            except Ended as ended:
                return ended.response
            except (Aborted, ConnectionResetError):
                return web.Response()  # the connection is gone; aiohttp drops this quietly
        return endpoint

    async def _answer(self, provider: Provider, handler: Handler, call: Call) -> web.StreamResponse:
        controls = call.controls
        if controls.latency_ms:
            await asyncio.sleep(controls.latency_ms / 1000)
        if controls.reset:
            reset(call.request)
            raise Aborted
        if controls.hang:
            await hang(call)
        if controls.status is not None:
            raise ApiError(controls.status, controls.error_message or default_message(controls.status))
        key = self.behaviour.api_key
        if key is not None and key not in provider.keys(call.request):
            raise provider.auth_error()
        response = await handler(call)
        if controls.reset_after_chunks is not None and not response.prepared and isinstance(response, web.Response):
            return await send_partial(call, response)
        return response

    # -- /__mock/ ---------------------------------------------------------------------------

    async def _list_requests(self, request: web.Request) -> web.StreamResponse:
        wanted = {k: request.query[k] for k in ("provider", "path", "model", "method") if k in request.query}
        data = [r.to_json() for r in self.requests
                if all(str(getattr(r, k)) == v for k, v in wanted.items())]
        return json_response({"data": data, "count": len(data)})

    async def _clear_requests(self, request: web.Request) -> web.StreamResponse:
        self.clear()
        return web.Response(status=204)

    async def _get_behaviour(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.behaviour.to_json())

    async def _set_behaviour(self, request: web.Request) -> web.StreamResponse:
        try:
            changes = orjson.loads(await request.read())
            if not isinstance(changes, dict):
                raise ControlError("expected a JSON object of settings")
            self.behaviour.update(**changes)
        except (orjson.JSONDecodeError, ControlError, TypeError) as exc:
            return json_response({"message": str(exc)}, 400)
        return json_response(self.behaviour.to_json())

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return json_response({"status": "ok", "requests": len(self.requests)})


def _variant(provider: Provider, request: web.Request) -> Provider:
    """``GET /v1/models`` belongs to Anthropic when the request carries ``anthropic-version``."""
    if provider is OPENAI and request.path.startswith("/v1/models") and "anthropic-version" in request.headers:
        return ANTHROPIC
    return provider


def _describe(record: RecordedRequest, provider: Provider, request: web.Request) -> None:
    """Fill in the record's provider, model and stream flag (before any check can fail)."""
    record.provider = provider.name
    info = request.match_info
    body = record.body if isinstance(record.body, dict) else {}
    if "deployment" in info:
        record.model = info["deployment"]
    elif "model_id" in info:
        record.model = urllib.parse.unquote(info["model_id"])
    elif "target" in info:
        record.model = info["target"].rpartition(":")[0] or None
    elif isinstance(body.get("model"), str):
        record.model = body["model"]
    record.stream = (bool(body.get("stream")) or request.path.endswith("/converse-stream")
                     or ":streamGenerateContent" in request.path)


def _error(provider: Provider, exc: ApiError, controls: Behaviour) -> web.Response:
    response = provider.error(exc)
    if exc.status == 429 or controls.retry_after is not None:
        response.headers["Retry-After"] = controls.retry_after or "1"
    return response


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one, read back by ``MockLLM.port``)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def run(host: str, port: int, behaviour: Behaviour, record_limit: int = RECORD_LIMIT,
        access_log: bool = True) -> None:
    """Serve in the foreground until SIGINT or SIGTERM (the ``gateway mock-llm`` command)."""
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # before saying it listens: a stop may follow at once
            loop.add_signal_handler(sig, stop.set)
        mock = MockLLM(host, port, behaviour, access_log=access_log, record_limit=record_limit)
        await mock.serve()
        print(f"mock LLM listening on {mock.url} (Ctrl-C stops it)", flush=True)
        try:
            await stop.wait()
        finally:
            await mock.stop()

    asyncio.run(main())


__all__ = ["MockLLM", "is_loopback", "run"]
