"""A response head plus its body, read on demand from its connection."""
from __future__ import annotations

from typing import AsyncIterator, Optional

from multidict import CIMultiDict, CIMultiDictProxy

from .client_conn import LOW_WATER, _Conn
from .client_errors import ReadTimeout

class UpstreamResponse:
    """A response head plus its body, read on demand from the connection.

    The connection goes back to the pool as soon as the body has been read to
    its end (or at ``release()`` once it has fully arrived); anything else
    closes it.
    """

    __slots__ = ("status", "reason", "version", "raw_headers", "content_length",
                 "_headers", "_conn", "_read_timeout", "_consumed")

    def __init__(self, conn: _Conn, read_timeout: Optional[float]) -> None:
        self.status: int = conn.status
        self.reason: str = conn.reason.decode("latin-1")
        self.version: str = conn.parser.get_http_version()
        self.raw_headers: list[tuple[bytes, bytes]] = conn.headers
        #: the Content-Length header's value (also on HEAD/304), None when chunked or absent
        self.content_length: Optional[int] = conn.length
        self._headers: Optional[CIMultiDictProxy[str]] = None
        self._conn: Optional[_Conn] = conn
        self._read_timeout = read_timeout
        self._consumed = False

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """Case-insensitive view of ``raw_headers``, decoded as latin-1; built on first use."""
        if self._headers is None:
            self._headers = CIMultiDictProxy(CIMultiDict(
                [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.raw_headers]))
        return self._headers

    def iter_chunks(self) -> AsyncIterator[bytes]:
        """The decoded body, piece by piece as it arrives (chunked framing removed)."""
        return _BodyIterator(self)

    async def read(self) -> bytes:
        """The whole body (for small answers; streaming callers use iter_chunks)."""
        conn = self._conn
        if conn is not None and conn.done:  # all of it is here already: one join
            data = b"".join(conn.chunks)
            conn.chunks.clear()
            self._consumed = True
            self.release()
            return data
        return b"".join([chunk async for chunk in _BodyIterator(self)])

    def release(self) -> None:
        """Give the connection back if the body fully arrived and keep-alive allows; else close it."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if conn.done and conn.error is None and conn.keep_alive and not conn.lost:
            conn.client._put(conn)
        else:
            conn.abort()

    def close(self) -> None:
        """Close the connection now (an answer that is not wanted, a client that left)."""
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.abort()

    def __del__(self) -> None:
        # a response dropped unreleased (a caller's bug) must not keep its socket open
        conn = self._conn
        if conn is not None:
            try:
                conn.abort()
            except Exception:  # e.g. the loop is already closed at interpreter exit
                pass

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.status} {self.reason}>"


class _BodyIterator:
    """A plain async iterator (no async generator to finalize if the consumer stops early)."""

    __slots__ = ("_response",)

    def __init__(self, response: UpstreamResponse) -> None:
        self._response = response

    def __aiter__(self) -> "_BodyIterator":
        return self

    async def __anext__(self) -> bytes:
        response = self._response
        conn = response._conn
        if conn is None:
            if response._consumed:
                raise StopAsyncIteration
            raise RuntimeError("the response was released or closed before its body was read")
        chunks = conn.chunks
        while not chunks:
            if conn.done:
                response._consumed = True
                response.release()
                raise StopAsyncIteration
            if conn.error is not None:
                response.close()
                raise conn.error
            try:
                woken = await conn.wait(response._read_timeout)
            except BaseException:  # cancelled: the rest of the body is never read
                response.close()
                raise
            if not woken:
                response.close()
                raise ReadTimeout(f"upstream sent no body data for {response._read_timeout}s")
        if len(chunks) == 1:
            data = chunks.popleft()
            conn.buffered -= len(data)
        else:
            data = b"".join(chunks)
            chunks.clear()
            conn.buffered = 0
        if conn.read_paused and conn.buffered < LOW_WATER and not conn.lost:
            conn.read_paused = False
            conn.transport.resume_reading()  # type: ignore[union-attr]
        return data
