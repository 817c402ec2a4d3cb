"""Proxy behaviour through a real gateway and real upstream servers."""
from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import ssl
import subprocess
import time

import aiohttp
import pytest
from aiohttp import web

from support import free_port, wait_for


async def _service(gateway, host: str, port: int | None = None, **route) -> None:
    service = {"name": "svc", "host": host}
    if port:
        service["port"] = port
    status, body = await gateway.admin("POST", "/services", service)
    assert status == 201, body
    status, body = await gateway.admin("POST", "/services/svc/routes", {"paths": ["/api"], **route})
    assert status == 201, body


async def _pool(gateway, *addresses: str, name: str = "pool", **upstream) -> None:
    status, body = await gateway.admin("POST", "/upstreams", {"name": name, **upstream})
    assert status == 201, body
    for address in addresses:
        status, body = await gateway.admin("POST", f"/upstreams/{name}/targets", {"target": address})
        assert status == 201, body


async def test_plain_host_service_and_path_joining(gateway, upstreams):
    up = await upstreams("plain")
    await gateway.admin("POST", "/services", {"name": "svc", "url": f"http://127.0.0.1:{up.port}/base"})
    await gateway.admin("POST", "/services/svc/routes", {"paths": ["/api"]})
    status, _, body = await gateway.proxy("GET", "/api/items?q=1&q=2")
    assert status == 200
    assert up.requests[-1]["path"] == "/base/items?q=1&q=2"
    await gateway.proxy("GET", "/api")
    assert up.requests[-1]["path"] == "/base"


async def test_strip_path_off_and_preserve_host(gateway, upstreams):
    up = await upstreams("a")
    await _pool(gateway, up.address)
    await _service(gateway, "pool", strip_path=False, preserve_host=True)
    await gateway.proxy("GET", "/api/x", headers={"Host": "client.example"})
    seen = up.requests[-1]
    assert seen["path"] == "/api/x"
    assert seen["headers"]["Host"] == "client.example"


async def test_host_header_is_target_by_default(gateway, upstreams):
    up = await upstreams("a")
    await _pool(gateway, up.address)
    await _service(gateway, "pool")
    await gateway.proxy("GET", "/api/x", headers={"Host": "client.example"})
    assert up.requests[-1]["headers"]["Host"] == up.address
    assert up.requests[-1]["headers"]["X-Forwarded-Host"] == "client.example"


async def test_router_precedence(gateway, upstreams):
    short, long_, regex, hosted, methods, headers = [await upstreams(n) for n in
                                                     ("short", "long", "regex", "host", "method", "header")]
    for up in (short, long_, regex, hosted, methods, headers):
        await gateway.admin("POST", "/services", {"name": up.name, "url": f"http://{up.address}"})
    await gateway.admin("POST", "/services/short/routes", {"paths": ["/v1"]})
    await gateway.admin("POST", "/services/long/routes", {"paths": ["/v1/chat"]})
    await gateway.admin("POST", "/services/regex/routes", {"paths": [r"~/v1/models/(?<model>[a-z0-9-]+)$".replace("?<", "?P<")]})
    await gateway.admin("POST", "/services/host/routes", {"paths": ["/v1"], "hosts": ["*.example.com"]})
    await gateway.admin("POST", "/services/method/routes", {"paths": ["/v1"], "methods": ["DELETE"]})
    await gateway.admin("POST", "/services/header/routes", {"paths": ["/v1"], "headers": {"x-version": ["2"]}})

    async def who(path: str, method: str = "GET", **headers: str) -> str:
        status, _, body = await gateway.proxy(method, path, headers=headers)
        assert status == 200, body
        return json.loads(body)["upstream"]

    assert await who("/v1/other") == "short"
    assert await who("/v1/chat/completions") == "long"
    assert await who("/v1/models/gpt-4o") == "regex"
    assert await who("/v1/chat", Host="api.example.com") == "host"
    assert await who("/v1/chat", method="DELETE") == "method"
    assert await who("/v1/x", **{"X-Version": "2"}) == "header"
    status, _, body = await gateway.proxy("GET", "/nope")
    assert status == 404 and body == b'{"message":"no Route matched with those values"}'


async def test_hop_by_hop_headers_removed_both_ways_and_forwarding_headers(gateway, upstreams):
    async def handler(request, upstream):
        return web.json_response({"headers": dict(request.headers)},
                                 headers={"X-Hop": "secret", "Connection": "X-Hop", "Keep-Alive": "timeout=5",
                                          "X-Kept": "yes"})
    up = await upstreams("a", handler)
    await _pool(gateway, up.address)
    await _service(gateway, "pool")
    status, headers, body = await gateway.proxy("GET", "/api/x", headers={
        "Connection": "keep-alive, X-Custom-Hop", "X-Custom-Hop": "1", "TE": "trailers",
        "Proxy-Authorization": "Basic abc", "X-Forwarded-For": "10.0.0.1", "X-Forwarded-Proto": "https"})
    assert status == 200
    seen = up.requests[-1]["headers"]
    for name in ("X-Custom-Hop", "TE", "Proxy-Authorization", "Keep-Alive"):
        assert name not in seen
    assert seen["X-Forwarded-For"] == "10.0.0.1, 127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"  # an untrusted client cannot claim https
    assert seen["X-Forwarded-Port"] == gateway.proxy_url.rsplit(":", 1)[1]
    assert seen["X-Real-IP"] == "127.0.0.1"
    assert "kong_py" in seen["Via"]
    assert "X-Hop" not in headers and "Keep-Alive" not in headers
    assert headers["X-Kept"] == "yes"
    assert "kong_py" in headers["Via"]


async def test_sse_streams_chunk_by_chunk(gateway, upstreams):
    release = asyncio.Event()

    async def handler(request, upstream):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await release.wait()
        await response.write(b"data: second\n\n")
        await response.write_eof()
        return response
    up = await upstreams("sse", handler)
    await _pool(gateway, up.address)
    await _service(gateway, "pool")
    async with gateway.session.get(gateway.proxy_url + "/api/stream") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
        assert first == b"data: first\n\n"  # arrived while the upstream still holds the rest
        release.set()
        assert await asyncio.wait_for(resp.content.read(), 5) == b"data: second\n\n"


async def test_request_body_streams_upstream_and_large_bodies_arrive_intact(start_gateway, upstreams):
    async def digest(request, upstream):
        data = await request.read()
        return web.json_response({"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    gateway = await start_gateway(retry_body_limit=1024)
    up = await upstreams("a", digest)
    await _pool(gateway, up.address)
    await _service(gateway, "pool")
    payload = bytes(range(256)) * 4000  # 1 MB, far above the retry buffer

    async def body():
        for i in range(0, len(payload), 65536):
            yield payload[i:i + 65536]
    status, _, answer = await gateway.proxy("POST", "/api/upload", data=body())
    assert status == 200
    assert json.loads(answer) == {"sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}
    status, _, answer = await gateway.proxy("POST", "/api/small", data=b'{"x": 1}')
    assert status == 200 and json.loads(answer)["size"] == 8


async def test_connection_refused_is_502_and_retried_on_another_target(gateway, upstreams):
    up = await upstreams("alive")
    dead = f"127.0.0.1:{free_port()}"
    await _pool(gateway, dead)
    await _service(gateway, "pool")
    status, headers, body = await gateway.proxy("GET", "/api/x")
    assert status == 502
    assert body == b'{"message":"An invalid response was received from the upstream server"}'
    await gateway.admin("POST", "/upstreams/pool/targets", {"target": up.address})
    for _ in range(4):
        status, headers, _ = await gateway.proxy("GET", "/api/x")
        assert status == 200
        assert headers["X-Kong-Upstream-Target"] == up.address
    assert up.hits == 4


async def test_read_timeout_is_504(gateway, upstreams):
    async def slow(request, upstream):
        await asyncio.sleep(2)
        return web.Response(text="late")
    up = await upstreams("slow", slow)
    await _pool(gateway, up.address)
    await gateway.admin("POST", "/services", {"name": "svc", "host": "pool", "read_timeout": 200, "retries": 0})
    await gateway.admin("POST", "/services/svc/routes", {"paths": ["/api"]})
    started = time.monotonic()
    status, _, body = await gateway.proxy("GET", "/api/x")
    assert status == 504
    assert body == b'{"message":"The upstream server is timing out"}'
    assert time.monotonic() - started < 1.5


async def test_no_targets_is_503(gateway):
    await _pool(gateway)
    await _service(gateway, "pool")
    status, _, body = await gateway.proxy("GET", "/api/x")
    assert status == 503
    assert body == b'{"message":"failure to get a peer from the ring-balancer"}'


async def test_config_change_applies_next_request_without_disturbing_in_flight(gateway, upstreams):
    release = asyncio.Event()

    async def held(request, upstream):
        await release.wait()
        return web.Response(text="held-done")
    first, second = await upstreams("first", held), await upstreams("second")
    await _pool(gateway, first.address)
    await _service(gateway, "pool")
    in_flight = asyncio.ensure_future(gateway.proxy("GET", "/api/slow"))
    await wait_for(lambda: first.hits == 1)
    status, body = await gateway.admin("DELETE", f"/upstreams/pool/targets/{first.address}")
    assert status == 204
    await gateway.admin("POST", "/upstreams/pool/targets", {"target": second.address})
    status, headers, _ = await gateway.proxy("GET", "/api/next")
    assert status == 200 and headers["X-Kong-Upstream-Target"] == second.address
    release.set()
    status, _, body = await in_flight
    assert status == 200 and body == b"held-done"


async def test_client_going_away_releases_in_flight(gateway, upstreams):
    async def endless(request, upstream):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for _ in range(200):
                await response.write(b"data: tick\n\n")
                await asyncio.sleep(0.05)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response
    up = await upstreams("endless", endless)
    await _pool(gateway, up.address)
    await _service(gateway, "pool")
    async with aiohttp.ClientSession() as client:
        resp = await client.get(gateway.proxy_url + "/api/stream")
        await resp.content.readuntil(b"\n\n")
        target = next(iter(gateway.worker.snapshot.targets.values()))
        assert target.runtime.in_flight == 1
        resp.close()
    await wait_for(lambda: target.runtime.in_flight == 0, timeout=3)
    await wait_for(lambda: gateway.worker.stats.in_flight == 0, timeout=3)


async def test_graceful_stop_lets_in_flight_requests_finish(start_gateway, upstreams):
    gateway = await start_gateway(graceful_timeout=5)

    async def slow(request, upstream):
        await asyncio.sleep(0.5)
        return web.Response(text="finished")
    up = await upstreams("slow", slow)
    await _pool(gateway, up.address)
    await _service(gateway, "pool")
    pending = asyncio.ensure_future(gateway.proxy("GET", "/api/x"))
    await wait_for(lambda: up.hits == 1)
    gateway.running.request_stop()
    status, _, body = await pending
    assert status == 200 and body == b"finished"
    await gateway.running.wait()


async def test_access_log_has_one_line_per_request(start_gateway, upstreams, tmp_path):
    gateway = await start_gateway(access_log=str(tmp_path / "access.log"))
    up = await upstreams("a")
    await _pool(gateway, up.address)
    await _service(gateway, "pool")
    await gateway.proxy("GET", "/api/x?y=1", headers={"User-Agent": "probe"})
    await gateway.proxy("GET", "/missing")
    gateway.worker.access_log.flush()
    lines = (tmp_path / "access.log").read_text().splitlines()
    assert len(lines) == 2
    assert '"GET /api/x?y=1 HTTP/1.1" 200 "probe"' in lines[0]
    assert f"target={up.address} tries=1" in lines[0]
    assert '"GET /missing HTTP/1.1" 404' in lines[1] and "target=- tries=0" in lines[1]


async def test_write_timeout_when_the_upstream_stops_reading_the_body(gateway):
    """An upstream that accepts the connection but never reads: 504 after write_timeout."""
    accepted = []

    async def stall(reader, writer):
        accepted.append(writer)  # keep the connection open, never read
    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await gateway.admin("POST", "/services", {"name": "svc", "url": f"http://127.0.0.1:{port}",
                                              "write_timeout": 300, "read_timeout": 10000, "retries": 0})
    await gateway.admin("POST", "/services/svc/routes", {"paths": ["/api"]})
    started = time.monotonic()
    status, _, body = await gateway.proxy("POST", "/api/upload", data=b"x" * (16 * 1024 * 1024))
    assert status == 504, body
    assert time.monotonic() - started < 5  # well before the 10 s read timeout
    server.close()
    for writer in accepted:
        writer.close()


async def test_buffered_bodies_small_and_large_arrive_with_their_length(gateway, upstreams):
    async def digest(request, upstream):
        data = await request.read()
        return web.json_response({"sha256": hashlib.sha256(data).hexdigest(),
                                  "length": request.headers.get("Content-Length")})
    up = await upstreams("a", digest)
    await _pool(gateway, up.address)
    await _service(gateway, "pool")
    for payload in (b"0123456789", bytes(range(256)) * 2048):  # 10 B, and 512 KiB written in chunks
        status, _, body = await gateway.proxy("POST", "/api/x", data=payload)
        assert status == 200
        assert json.loads(body) == {"sha256": hashlib.sha256(payload).hexdigest(), "length": str(len(payload))}


async def test_upstream_breaking_off_mid_body_closes_the_client_connection(gateway):
    async def truncated(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part")
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(truncated, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await _pool(gateway, f"127.0.0.1:{port}")
    await _service(gateway, "pool")
    async with aiohttp.ClientSession() as client:
        async with client.get(gateway.proxy_url + "/api/x") as resp:
            assert resp.status == 200
            try:
                await resp.read()
                raise AssertionError("a truncated body must not look complete")
            except aiohttp.ClientPayloadError:
                pass
    _, metrics = await gateway.admin("GET", "/metrics")
    assert 'kind="body"' in metrics
    server.close()


async def test_head_and_not_modified_keep_their_headers_without_a_body(gateway, upstreams):
    async def conditional(request, upstream):
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(body=b"x" * 50, headers={"ETag": '"v1"'})
    up = await upstreams("a", conditional)
    await _pool(gateway, up.address)
    await _service(gateway, "pool")
    status, headers, body = await gateway.proxy("HEAD", "/api/file")
    assert status == 200 and headers["Content-Length"] == "50" and body == b""
    status, headers, body = await gateway.proxy("GET", "/api/file", headers={"If-None-Match": '"v1"'})
    assert status == 304 and body == b""
    status, _, body = await gateway.proxy("GET", "/api/file")  # the connection is still good
    assert status == 200 and body == b"x" * 50


@pytest.fixture
def self_signed(tmp_path):
    """A certificate for 127.0.0.1 made with the openssl CLI (skipped without it)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_https_target_and_tls_verify(gateway, self_signed):
    app = web.Application()

    async def hello(request):
        return web.json_response({"secure": request.secure})
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=self_signed).start()
    try:
        await gateway.admin("POST", "/upstreams", {"name": "tls"})
        await gateway.admin("POST", "/upstreams/tls/targets", {"host": "127.0.0.1", "port": port, "protocol": "https"})
        await gateway.admin("POST", "/services", {"name": "svc", "host": "tls", "retries": 0})
        await gateway.admin("POST", "/services/svc/routes", {"paths": ["/api"]})
        status, _, body = await gateway.proxy("GET", "/api/x")
        assert status == 502  # a self-signed certificate is refused by default
        await gateway.admin("PATCH", "/services/svc", {"tls_verify": False})
        status, _, body = await gateway.proxy("GET", "/api/x")
        assert status == 200 and json.loads(body) == {"secure": True}
    finally:
        await runner.cleanup()


async def test_upstream_proxy_receives_absolute_form_requests(gateway, upstreams):
    """With ``upstream.proxy`` set, http targets are reached through the forward proxy."""
    seen: list[bytes] = []

    async def forward_proxy(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])
        body = b'{"via": "proxy"}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(forward_proxy, "127.0.0.1", 0)
    proxy_port = server.sockets[0].getsockname()[1]
    up = await upstreams("behind-proxy")
    await _pool(gateway, up.address, proxy={"host": "127.0.0.1", "port": proxy_port})
    await _service(gateway, "pool")
    status, _, body = await gateway.proxy("GET", "/api/models?x=1")
    assert status == 200 and json.loads(body) == {"via": "proxy"}
    assert seen == [f"GET http://{up.address}/models?x=1 HTTP/1.1".encode()]
    assert up.hits == 0  # everything went through the proxy
    server.close()


def test_typed_context_keys():
    from kong_py.proxy.context import Context, ContextKey, Request, UpstreamRequest
    from multidict import CIMultiDict
    budget = ContextKey[int]("test.budget", default=3)
    ctx = Context(Request("GET", "http", "/", "/", "", [], "127.0.0.1", 1, "h", 80),
                  UpstreamRequest("GET", "/", "", CIMultiDict()), {}, None, None, None)
    assert ctx.get(budget) == 3
    ctx.set(budget, 1)
    assert ctx.get(budget) == 1 and ctx.vars[budget] == 1
    assert ctx.get(ContextKey[int]("test.budget")) is None  # keys are objects, not names
