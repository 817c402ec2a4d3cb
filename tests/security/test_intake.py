"""What the gateway takes from a client, sent as raw bytes: smuggling, truncated
and malformed bodies, trailers, head limits, and HTTP's edge cases."""
from __future__ import annotations

import pytest

from raw import body_of, exchange, settle, status_of

HEAD = b"POST /api/pay HTTP/1.1\r\nHost: gw\r\n"


@pytest.mark.parametrize("request_bytes", [
    HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",   # CL + TE
    HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",             # two lengths
    HEAD + b"Content-Length: 5\r\nX-A: b\r\n c\r\n\r\nhello",                    # obs-fold
    b"POST /api/pay HTTP/1.1\nHost: gw\nContent-Length: 5\n\nhello",             # bare LF
    HEAD + b"Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",        # not chunked at the end
])
async def test_smuggling_attempts_get_400_and_nothing_reaches_the_upstream(edge, request_bytes):
    gateway, upstream, port = await edge()
    response = await exchange(port, request_bytes)
    assert status_of(response) == 400
    assert body_of(response)["message"].startswith("Bad request")
    await settle()
    assert upstream.connections == []


@pytest.mark.parametrize("request_bytes", [
    HEAD + b"Content-Length: 11\r\n\r\namount=10",                               # shorter than announced
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n9\r\namount=10\r\n",             # no last chunk
])
async def test_a_body_cut_off_by_the_client_is_never_completed_upstream(edge, request_bytes):
    gateway, upstream, port = await edge()
    await exchange(port, request_bytes, close_after=True)
    await settle()
    assert upstream.requests == []  # no shorter, "complete" request reached it
    status, body = await gateway.admin("GET", "/status")
    assert body["server"]["incomplete_requests"] == 1


async def test_a_streamed_body_cut_off_aborts_the_upstream_request(edge):
    gateway, upstream, port = await edge(retry_body_limit=1024)
    head = HEAD + b"Content-Length: 100000\r\n\r\n"
    await exchange(port, head + b"x" * 50_000, close_after=True, pause=0.3)
    await settle()
    assert upstream.requests == []
    assert len(upstream.connections) == 1 and upstream.connections[0].closed
    assert b"x" * 1000 in upstream.connections[0].data  # it got part of the body, then the connection died


@pytest.mark.parametrize("chunk_line", [b"zz", b"-5", b"ffffffffffffffffffffff", b"5\n"])
async def test_malformed_chunk_sizes_get_400_and_no_request_upstream(edge, chunk_line):
    gateway, upstream, port = await edge()
    response = await exchange(port, HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunk_line + b"\r\nhello\r\n0\r\n\r\n")
    assert status_of(response) == 400 and b"application/json" in response
    await settle()
    assert upstream.requests == []


async def test_chunked_trailers_never_become_request_headers(edge):
    gateway, upstream, port = await edge()
    response = await exchange(port, HEAD + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                     b"5\r\nhello\r\n0\r\nAuthorization: Bearer trailer\r\n"
                                     b"X-Forwarded-For: 6.6.6.6\r\n\r\n")
    assert status_of(response) == 200
    [(method, path, headers, body)] = upstream.requests
    assert body == b"hello" and "authorization" not in headers
    assert "6.6.6.6" not in headers["x-forwarded-for"]


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /api/x HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n", 431),
    (b"GET /api/x HTTP/1.1\r\nHost: gw\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(10_000)) + b"\r\n", 431),
    (b"GET /api/x HTTP/1.1\r\nHost: gw\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 4000) for i in range(9))
     + b"\r\n", 431),                                                              # 36 KB in all
    (b"GET /api/" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: gw\r\n\r\n", 414),
])
async def test_heads_over_the_limits_are_refused(edge, request_bytes, status):
    gateway, upstream, port = await edge()
    response = await exchange(port, request_bytes)
    assert status_of(response) == status and "message" in body_of(response)
    assert upstream.connections == []
    assert (await gateway.admin("GET", "/status"))[1]["server"]["requests_refused"] == 1


async def test_a_4kb_head_always_passes(edge):
    gateway, upstream, port = await edge()
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 90) for i in range(40))  # ~4 KB
    response = await exchange(port, b"GET /api/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n" + headers + b"\r\n")
    assert status_of(response) == 200


async def test_an_upstream_response_head_over_the_limit_is_502(edge):
    gateway, upstream, port = await edge(upstream_options={"big_header": 1_000_000})
    response = await exchange(port, b"GET /api/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 502 and b"a" * 1000 not in response


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /api/x HTTP/1.1\r\n\r\n", 400),                                      # no Host
    (b"GET /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),               # two Hosts
    (b"TRACE /api/x HTTP/1.1\r\nHost: gw\r\n\r\n", 405),
    (b"GET /api/x HTTP/1.1\r\nHost: gw\r\nExpect: something\r\n\r\n", 417),
    (b"GET /api/x HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 501),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),                     # TLS to a plain port
])
async def test_edge_cases_answered_with_kongs_json_and_nothing_upstream(edge, request_bytes, status):
    gateway, upstream, port = await edge()
    response = await exchange(port, request_bytes)
    assert status_of(response) == status
    head = response.partition(b"\r\n\r\n")[0].lower()
    assert b"content-type: application/json" in head and b"connection: close" in head
    assert isinstance(body_of(response)["message"], str)
    assert upstream.connections == []


async def test_expect_100_continue_is_answered_by_the_gateway(edge):
    gateway, upstream, port = await edge()
    import asyncio
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEAD + b"Content-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    response = await asyncio.wait_for(reader.read(), 3)
    writer.close()
    assert status_of(response) == 200
    [(_, _, headers, body)] = upstream.requests
    assert body == b"hello" and "expect" not in headers


async def test_pipelined_requests_are_answered_in_order(edge):
    gateway, upstream, port = await edge()
    one = b"GET /api/1 HTTP/1.1\r\nHost: gw\r\n\r\n"
    two = b"POST /api/2 HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    response = await exchange(port, one + two)
    assert response.count(b"HTTP/1.1 200") == 2
    assert [(m, p) for m, p, _, _ in upstream.requests] == [("GET", "/1"), ("POST", "/2")]
