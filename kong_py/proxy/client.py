"""A lean HTTP/1.1 client for the proxy's upstream calls.

Why not aiohttp: a proxy already has every header as text, knows its timeouts
and never needs cookies, redirects, default headers or URL objects, yet paid
for all of them on each request. This client writes the head it is given, reads
the answer with httptools on an asyncio Protocol (uvloop or the default loop),
and keeps idle keep-alive connections per origin. A request costs a few futures
and timer handles, no tasks.

    client = UpstreamClient()
    response = await client.request("GET", "http", "10.0.0.7", 8080, "/path?q=1",
                                     [("Host", "example.com")], connect_timeout=60,
                                     read_timeout=60, write_timeout=60)
    async for chunk in response.iter_chunks():   # releases the connection at the end
        ...
    response.release()                           # idempotent; closes if unfinished

Every failure is an ``UpstreamError`` whose ``kind`` tells the proxy whether the
upstream may have seen the request: "connect" (it did not: safe to try another
target), "timeout" and "read" (it may have: never replayed).
"""
from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import Any, Iterable, Optional

from .address_policy import AddressPolicy, parse_ip
from .client_conn import (COALESCE, HIGH_WATER, LOW_WATER, MAX_TUNNEL_HEAD, WRITE_PIECE, Body, ProxyAddress,
                          Verify, _Conn)
from .client_errors import (ConnectError, ConnectTimeout, IncompleteBody, ProtocolError, ReadTimeout, RemoteClosed,
                            UpstreamError, WriteTimeout)
from .client_response import UpstreamResponse

__all__ = [
    "UpstreamClient", "UpstreamResponse", "UpstreamError", "ConnectError", "ConnectTimeout",
    "WriteTimeout", "ReadTimeout", "RemoteClosed", "ProtocolError", "IncompleteBody",
    "HIGH_WATER", "LOW_WATER", "WRITE_PIECE", "COALESCE", "MAX_TUNNEL_HEAD",
]


_SSL_CONTEXTS: dict[bool, ssl.SSLContext] = {}


def _ssl_context(verify: Verify) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = _SSL_CONTEXTS.get(verify)
    if context is None:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _SSL_CONTEXTS[verify] = context
    return context


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _head(method: str, target: str, headers: Iterable[tuple[str, str]],
          body: Body) -> tuple[bytes, bool, Optional[int], bool]:
    """Serialize the request head: (bytes, chunked framing, caller's Content-Length, Connection: close).

    Headers go out exactly as given; only the body's framing header may be added.
    """
    lines = [f"{name}: {value}\r\n" for name, value in headers]
    text = f"{method} {target} HTTP/1.1\r\n" + "".join(lines)
    count = len(lines) + 1
    if text.count("\n") != count or text.count("\r") != count:
        raise ValueError("CR or LF inside the request target or a header (request splitting)")
    low = text.lower()
    declared: Optional[int] = None
    if "\ncontent-length:" in low:
        if low.count("\ncontent-length:") > 1:
            raise ValueError("more than one Content-Length header")
        start = low.index("\ncontent-length:") + 16
        declared = int(low[start:low.index("\r", start)])
    caller_te = "\ntransfer-encoding:" in low
    if caller_te and declared is not None:
        raise ValueError("both Content-Length and Transfer-Encoding (request smuggling)")
    close = False
    if "\nconnection:" in low:
        start = low.index("\nconnection:") + 12
        close = "close" in [t.strip() for t in low[start:low.index("\r", start)].split(",")]
    chunked = caller_te  # the caller's Transfer-Encoding: we frame the body in chunks
    if body is None:
        pass
    elif isinstance(body, (bytes, bytearray)):
        if declared is None and not caller_te:
            text += f"Content-Length: {len(body)}\r\n"
        elif declared is not None and declared != len(body):
            raise ValueError(f"Content-Length {declared} but the body has {len(body)} bytes")
    elif declared is None:
        chunked = True
        if not caller_te:
            text += "Transfer-Encoding: chunked\r\n"
    text += "\r\n"
    try:
        data = text.encode("latin-1")  # the proxy's headers are latin-1 decoded bytes: exact round trip
    except UnicodeEncodeError:  # a plugin's non-latin-1 text: UTF-8 for that line only
        data = b"\n".join([_encode_line(line) for line in text.split("\n")])
    return data, chunked, declared, close


def _encode_line(line: str) -> bytes:
    try:
        return line.encode("latin-1")
    except UnicodeEncodeError:
        return line.encode("utf-8")


class UpstreamClient:
    """Pooled HTTP/1.1 connections to upstreams; one per worker.

    Idle keep-alive connections are kept per origin (scheme, host, port, proxy
    and, for https, the TLS settings), newest reused first; they are closed
    after ``keepalive_idle_timeout`` seconds (checked on reuse and by a periodic
    sweep) or when the upstream closes them.
    """

    def __init__(self, keepalive_idle_timeout: float = 60, max_idle_per_origin: int = 256,
                 max_head_size: int = 32768, max_header_size: int = 8192,
                 address_policy: Optional[AddressPolicy] = None) -> None:
        self.keepalive_idle_timeout = float(keepalive_idle_timeout)
        self.max_idle_per_origin = max_idle_per_origin
        #: a response head (or one of its lines) over these is a ProtocolError (the proxy: 502)
        self.max_head_size = max_head_size
        self.max_header_size = max_header_size
        #: addresses never connected to (checked after DNS resolution); None: any
        self.address_policy = address_policy
        self._idle: dict[tuple[Any, ...], list[_Conn]] = {}
        self._conns: set[_Conn] = set()
        self._sweeper: Optional[asyncio.TimerHandle] = None
        self._closed = False

    async def request(self, method: str, scheme: str, host: str, port: int, target: str,
                      headers: Iterable[tuple[str, str]], body: Body = None, *,
                      connect_timeout: Optional[float], read_timeout: Optional[float],
                      write_timeout: Optional[float], proxy: Optional[ProxyAddress] = None,
                      verify: Verify = True, server_hostname: Optional[str] = None) -> UpstreamResponse:
        """Send one request and return once the response head has arrived.

        ``target`` is the encoded path and query; ``headers`` go out as given
        (the caller sets Host). ``body`` is None, bytes (sent with
        Content-Length) or an async iterable of bytes (streamed, chunked unless
        the caller gave Content-Length). ``verify`` may be an SSLContext (a
        custom CA, a client certificate). Timeouts are seconds, None for none.
        """
        if self._closed:
            raise RuntimeError("the UpstreamClient is closed")
        if scheme == "https":
            key: tuple[Any, ...] = (scheme, host, port, proxy, verify, server_hostname)
        elif scheme == "http":
            key = (scheme, host, port, proxy)
            if proxy is not None:
                target = f"http://{_authority(host, port)}{target}"  # absolute-form for the proxy
        else:
            raise ValueError(f"unsupported scheme {scheme!r}")
        head, chunked, declared, close = _head(method, target, headers, body)
        head_only = method == "HEAD"
        conn = self._take(key)
        if conn is not None:
            try:
                return await self._exchange(conn, head, body, chunked, declared, close, head_only,
                                            read_timeout, write_timeout)
            except (RemoteClosed, ConnectError):  # closed or reset before any byte of an answer
                if body is not None and not isinstance(body, (bytes, bytearray)):
                    raise  # a streamed body cannot be sent twice
                # the upstream closed this idle connection as we reused it, before any
                # answer: it did not process the request, so try once on a new one
        conn = await self._connect(key, scheme, host, port, proxy, verify, server_hostname, connect_timeout)
        return await self._exchange(conn, head, body, chunked, declared, close, head_only,
                                    read_timeout, write_timeout)

    async def close(self) -> None:
        """Close every connection, idle or busy; later requests raise RuntimeError."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._idle.clear()
        conns = list(self._conns)
        for conn in conns:
            conn.pooled = False
            conn.abort()
        pending = [conn.closed for conn in conns if not conn.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    async def __aenter__(self) -> "UpstreamClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def idle_count(self, key: Optional[tuple[Any, ...]] = None) -> int:
        """Idle connections kept (for one origin key, or all): for tests and metrics."""
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(stack) for stack in self._idle.values())

    # internals --------------------------------------------------------------
    async def _exchange(self, conn: _Conn, head: bytes, body: Body, chunked: bool, declared: Optional[int],
                        close: bool, head_only: bool, read_timeout: Optional[float],
                        write_timeout: Optional[float]) -> UpstreamResponse:
        conn.begin(head_only)
        try:
            if conn.lost:
                raise conn.closed_error()
            await conn.send(head, body, chunked, declared, write_timeout)
            await conn.wait_head(read_timeout)
        except BaseException:  # failure or cancellation: the connection's state is unknown
            conn.abort()
            raise
        if close:
            conn.keep_alive = False
        response = UpstreamResponse(conn, read_timeout)
        if conn.done and not conn.chunks:  # no body (HEAD, 204, 304): back to the pool now
            response._consumed = True
            response.release()
        return response

    async def _connect(self, key: tuple[Any, ...], scheme: str, host: str, port: int,
                       proxy: Optional[ProxyAddress], verify: Verify, server_hostname: Optional[str],
                       timeout: Optional[float]) -> _Conn:
        loop = asyncio.get_running_loop()
        conn = _Conn(self, key, loop)
        context = _ssl_context(verify) if scheme == "https" else None
        sni = (server_hostname or host) if context is not None else None
        where = _authority(host, port)
        try:
            async with asyncio.timeout(timeout):
                if proxy is None:
                    await self._open(loop, conn, host, port, context, sni)
                else:
                    proxy_scheme, proxy_host, proxy_port = proxy
                    if proxy_scheme != "http":
                        raise ValueError(f"unsupported proxy scheme {proxy_scheme!r}")
                    where = f"{where} via proxy {_authority(proxy_host, proxy_port)}"
                    await self._open(loop, conn, proxy_host, proxy_port, None, None)
                    if context is not None:
                        await conn.open_tunnel(_authority(host, port))
                        transport = await loop.start_tls(conn.transport, conn, context,  # type: ignore[arg-type]
                                                         server_hostname=sni)
                        if transport is None:
                            raise ConnectError(f"TLS through the proxy failed for {where}")
                        conn.transport = transport  # type: ignore[assignment]
        except BaseException as exc:
            conn.abort()
            conn._gone()
            if isinstance(exc, TimeoutError):  # asyncio.timeout, or the kernel's own ETIMEDOUT
                raise ConnectTimeout(f"connecting to {where} took longer than {timeout}s") from exc
            if isinstance(exc, OSError):  # refused, unreachable, DNS, TLS handshake/verification
                raise ConnectError(f"cannot connect to {where}: {exc}") from exc
            raise
        return conn

    async def _open(self, loop: asyncio.AbstractEventLoop, conn: _Conn, host: str, port: int,
                    context: Optional[ssl.SSLContext], sni: Optional[str]) -> None:
        """Connect ``conn`` to ``host``:``port``; with an address policy, only to the
        resolved addresses it allows (TLS still names ``sni``, the host's name)."""
        policy = self.address_policy
        if policy is None:
            await loop.create_connection(lambda: conn, host, port, ssl=context, server_hostname=sni)
            return
        literal = parse_ip(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = list(dict.fromkeys(info[4][0] for info in infos))
        allowed = [a for a in addresses if policy.denied(a, port) is None]
        if not allowed:
            reason = policy.denied(addresses[0], port) if addresses else "it has no address"
            raise OSError(f"{host} resolves to {', '.join(addresses) or 'nothing'}, refused: {reason}")
        for i, address in enumerate(allowed):  # in resolver order, as create_connection does
            try:
                await loop.create_connection(lambda: conn, address, port, ssl=context, server_hostname=sni)
                return
            except OSError:
                if i == len(allowed) - 1:
                    raise

    def _take(self, key: tuple[Any, ...]) -> Optional[_Conn]:
        stack = self._idle.get(key)
        if not stack:
            return None
        oldest = time.monotonic() - self.keepalive_idle_timeout
        while stack:
            conn = stack.pop()
            conn.pooled = False
            if not conn.lost and conn.idle_since > oldest:
                return conn
            conn.abort()
        return None

    def _put(self, conn: _Conn) -> None:
        stack = self._idle.get(conn.key)
        if self._closed or (stack is not None and len(stack) >= self.max_idle_per_origin):
            conn.abort()
            return
        if stack is None:
            stack = self._idle[conn.key] = []
        conn.active = False
        conn.chunks.clear()
        if conn.read_paused:
            conn.read_paused = False
            conn.transport.resume_reading()  # type: ignore[union-attr]
        conn.pooled = True
        conn.idle_since = time.monotonic()
        stack.append(conn)
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(self._sweep_interval(), self._sweep)

    def _forget(self, conn: _Conn) -> None:
        """A connection closed (by either side): drop it from the bookkeeping."""
        self._conns.discard(conn)
        if conn.pooled:
            conn.pooled = False
            stack = self._idle.get(conn.key)
            if stack is not None:
                try:
                    stack.remove(conn)
                except ValueError:
                    pass
                if not stack:
                    del self._idle[conn.key]

    def _sweep_interval(self) -> float:
        return min(max(self.keepalive_idle_timeout / 4, 0.05), 10.0)

    def _sweep(self) -> None:
        """Close connections idle for longer than the timeout (the oldest are at the bottom)."""
        self._sweeper = None
        oldest = time.monotonic() - self.keepalive_idle_timeout
        loop = None
        for key, stack in list(self._idle.items()):
            expired = 0
            while expired < len(stack) and stack[expired].idle_since <= oldest:
                expired += 1
            if expired:
                for conn in stack[:expired]:
                    conn.pooled = False
                    conn.abort()
                del stack[:expired]
            if stack:
                loop = stack[0].loop
            else:
                del self._idle[key]
        if loop is not None and not self._closed:
            self._sweeper = loop.call_later(self._sweep_interval(), self._sweep)
