"""A tiny, fast HTTP/1.1 upstream for loopback benchmarks.

Raw asyncio protocol (uvloop when available): keep-alive, pipelining-safe,
a fixed small body with Content-Length, no routing. It listens on N loopback
ports in one process and prints them as one JSON line on stdout once
everything is bound:

    {"ports": [41234, 41235, ...]}

``GET /__counts`` on any port answers with the number of requests each port
served so far (a JSON object ``{"port": count}``), so a benchmark can check
that the balancer really spread the load. The server exits on SIGTERM/SIGINT
or as soon as its stdin closes, so it never outlives the process that
started it.

    python bench/upstream.py --count 2             # two free ports
    python bench/upstream.py --ports 8081,8082     # fixed ports
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import sys

BODY = b'{"ok":true}\n'
RESPONSE = (b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
            b"\r\n" + BODY)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MAX_HEAD = 64 * 1024


class HttpProtocol(asyncio.Protocol):
    """Answers every request on the connection with RESPONSE."""

    __slots__ = ("transport", "buffer", "index", "counts", "skip")

    def __init__(self, index: int, counts: list[int]) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.index = index
        self.counts = counts
        self.skip = 0  # request body bytes still to discard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        out = []
        while buf:
            if self.skip:
                n = min(self.skip, len(buf))
                self.skip -= n
                buf = buf[n:]
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self.transport.write(BAD_REQUEST)  # type: ignore[union-attr]
                    self.transport.close()  # type: ignore[union-attr]
                    return
                break
            head = buf[:end]
            buf = buf[end + 4:]
            # request bodies are rare here (GET load): honour Content-Length if present
            lower = head.lower()
            pos = lower.find(b"\r\ncontent-length:")
            if pos >= 0:
                line_end = lower.find(b"\r\n", pos + 2)
                value = lower[pos + 17: line_end if line_end >= 0 else len(lower)]
                self.skip = int(value.strip() or b"0")
            if head.startswith(b"GET /__counts"):
                out.append(_counts_response())
            else:
                self.counts[self.index] += 1
                out.append(RESPONSE)
        self.buffer = buf
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


_PORTS: list[int] = []
_COUNTS: list[int] = []


def _counts_response() -> bytes:
    body = json.dumps({str(p): c for p, c in zip(_PORTS, _COUNTS)}).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


async def serve(ports: list[int], host: str = "127.0.0.1") -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for requested in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, requested))
        sock.listen(1024)
        sock.setblocking(False)
        index = len(_PORTS)
        _PORTS.append(sock.getsockname()[1])
        _COUNTS.append(0)
        servers.append(await loop.create_server(lambda i=index: HttpProtocol(i, _COUNTS), sock=sock))
    sys.stdout.write(json.dumps({"ports": _PORTS}) + "\n")
    sys.stdout.flush()

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # stdin closing (parent gone) also stops us
    try:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def watch_stdin() -> None:
            while await reader.read(4096):
                pass
            stop.set()
        watcher = asyncio.ensure_future(watch_stdin())
    except (OSError, ValueError):  # stdin is not a pipe (e.g. a terminal): rely on signals
        watcher = None
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1, help="how many free ports to listen on")
    parser.add_argument("--ports", help="comma-separated fixed ports (instead of --count)")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    if args.ports:
        ports = [int(p) for p in args.ports.split(",") if p.strip()]
    else:
        ports = [0] * args.count
    _raise_nofile()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(ports, args.host))
    except KeyboardInterrupt:
        pass
    os._exit(0)  # skip slow teardown of thousands of sockets


if __name__ == "__main__":
    main()
