"""A small closed-loop HTTP/1.1 load generator for loopback benchmarks.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length and chunked
responses) to keep one core busy generating load without the overhead of a
full client library, so the number it prints reflects the server under test.
Every run is bounded by ``duration`` seconds.
"""
from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    """Counts and latencies gathered by one run."""

    requests: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile in milliseconds."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, int(len(ordered) * p / 100))
        return ordered[index] * 1000


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status code."""
    status_line = await reader.readuntil(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    chunked = False
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value.strip())
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _worker(host: str, port: int, requests: list[bytes], deadline: float, result: Result,
                  offset: int = 0) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    clock = time.perf_counter
    count = len(requests)
    index = offset
    try:
        while clock() < deadline:
            request = requests[index % count]
            index += 1
            start = clock()
            writer.write(request)
            try:
                status = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                result.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            result.latencies.append(clock() - start)
            result.requests += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run(url_host: str, port: int, path: str = "/", *, connections: int = 50,
              duration: float = 5.0, host_header: str | None = None,
              extra_headers: dict[str, str] | None = None,
              vary_header: str | None = None, vary_path: bool = False,
              variants: int = 1000) -> Result:
    """Hammer ``http://url_host:port/path`` for ``duration`` seconds.

    With ``vary_header``, requests carry that header with ``variants`` distinct
    values (``user-0`` ...); with ``vary_path``, the path gets a suffix
    ``/0`` ... ``/<variants - 1>``. Each connection cycles through the variants
    from its own starting point (e.g. for hash balancing, or to defeat caches
    keyed by URL).
    """
    fixed = [f"Host: {host_header or f'{url_host}:{port}'}"]
    for name, value in (extra_headers or {}).items():
        fixed.append(f"{name}: {value}")

    def build(v: int | None) -> bytes:
        target = f"{path.rstrip('/')}/{v}" if vary_path and v is not None else path
        lines = [f"GET {target} HTTP/1.1", *fixed]
        if vary_header and v is not None:
            lines.append(f"{vary_header}: user-{v}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    varied = bool(vary_header or vary_path)
    requests = [build(v) for v in range(max(1, variants))] if varied else [build(None)]
    result = Result()
    start = time.perf_counter()
    deadline = start + duration
    stride = max(1, len(requests) // max(1, connections))
    await asyncio.gather(*(_worker(url_host, port, requests, deadline, result, i * stride)
                           for i in range(connections)))
    result.elapsed = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--path", default="/")
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("--vary-header", metavar="NAME",
                        help="send this header with 1000 distinct values (user-0 ...)")
    parser.add_argument("--vary-path", action="store_true",
                        help="append /0 ... /999 to the path (distinct URLs)")
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    res = asyncio.run(run(args.host, args.port, args.path,
                          connections=args.connections, duration=args.duration,
                          vary_header=args.vary_header, vary_path=args.vary_path))
    print(f"{res.rps:.0f} req/s p50={res.percentile(50):.2f}ms p99={res.percentile(99):.2f}ms "
          f"errors={res.errors} statuses={res.statuses}")


if __name__ == "__main__":
    main()
