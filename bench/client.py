"""Micro-benchmark: kong_py's UpstreamClient against aiohttp's ClientSession.

Both clients run in this process (uvloop when available), 50 concurrent callers
each (closed loop: a caller sends its next request as soon as the previous
answer is read), against ``bench/upstream.py`` (a raw asyncio keep-alive
HTTP/1.1 server) in its own process on 127.0.0.1. The requests look like the
proxy's: ~9 headers, an already-encoded path and query, a 12-byte answer.
aiohttp is configured as the worker configures it today. Rounds alternate
between the clients; medians are reported, with this process's CPU time per
request (what the proxy worker would spend).

    .venv/bin/python bench/client.py                         # ~30 s
    .venv/bin/python bench/client.py --duration 5 --rounds 5
    .venv/bin/python bench/client.py --body 1024             # POST with a 1 KiB body

Bounded: each measurement lasts --warmup + --duration seconds; the upstream
process is stopped on exit (and exits by itself when its stdin closes).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import aiohttp  # noqa: E402
from multidict import CIMultiDict  # noqa: E402
from yarl import URL  # noqa: E402

from kong_py.proxy.client import UpstreamClient  # noqa: E402

HOST = "127.0.0.1"
HEADERS = CIMultiDict([
    ("User-Agent", "loadgen/1.0"), ("Accept", "*/*"), ("X-Forwarded-For", "127.0.0.1"),
    ("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", "bench.test"), ("X-Forwarded-Port", "8000"),
    ("X-Real-IP", "127.0.0.1"), ("Via", "1.1 kong_py/0.1.0"), ("Host", "bench.test"),
])
Call = Callable[[], Awaitable[None]]


def start_upstream() -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen([sys.executable, str(BENCH / "upstream.py"), "--count", "1"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise SystemExit("bench/upstream.py did not start")
    return process, json.loads(line)["ports"][0]


async def measure(call: Call, callers: int, warmup: float, duration: float) -> tuple[float, float, int]:
    """(requests/s, CPU µs per request, errors) for ``callers`` closed-loop callers."""
    loop = asyncio.get_running_loop()
    counting = False
    stop_at = loop.time() + warmup + duration
    count = errors = 0

    async def caller() -> None:
        nonlocal count, errors
        while loop.time() < stop_at:
            try:
                await call()
            except Exception:
                errors += 1
                await asyncio.sleep(0.01)
                continue
            if counting:
                count += 1

    tasks = [asyncio.ensure_future(caller()) for _ in range(callers)]
    await asyncio.sleep(warmup)
    counting = True
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(duration)
    counting = False
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    return count / elapsed, cpu / max(count, 1) * 1e6, errors


async def run(args: argparse.Namespace, port: int) -> dict[str, list[tuple[float, float, int]]]:
    body = b"x" * args.body if args.body else None
    method = "POST" if body else "GET"
    target = "/bench/t2/17?user=42"

    ours = UpstreamClient()
    pairs = list(HEADERS.items())

    async def ours_call() -> None:
        headers = list(pairs)  # as the proxy would: a fresh header list per request
        response = await ours.request(method, "http", HOST, port, target, headers, body,
                                      connect_timeout=60, read_timeout=60, write_timeout=60)
        await response.read()
        response.release()

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=10), auto_decompress=False,
        skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        cookie_jar=aiohttp.DummyCookieJar())
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=60)

    async def aiohttp_call() -> None:
        headers = HEADERS.copy()
        if body is not None:
            headers["Content-Length"] = str(len(body))
        url = URL.build(scheme="http", authority=f"{HOST}:{port}", path="/bench/t2/17",
                        query_string="user=42", encoded=True)
        response = await session.request(method, url, headers=headers, data=body, timeout=timeout,
                                         allow_redirects=False)
        await response.read()
        response.release()

    results: dict[str, list[tuple[float, float, int]]] = {"kong_py UpstreamClient": [], "aiohttp ClientSession": []}
    calls: dict[str, Call] = {"kong_py UpstreamClient": ours_call, "aiohttp ClientSession": aiohttp_call}
    try:
        for round_ in range(args.rounds):
            order = list(calls) if round_ % 2 == 0 else list(reversed(calls))
            for name in order:
                result = await measure(calls[name], args.callers, args.warmup, args.duration)
                results[name].append(result)
                print(f"  round {round_ + 1} {name:24} {result[0]:9.0f} req/s {result[1]:7.1f} µs CPU/req"
                      f"{f'  errors {result[2]}' if result[2] else ''}", flush=True)
    finally:
        await ours.close()
        await session.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=50, help="concurrent callers per client (50)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before counting (1)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds counted per measurement (3)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported (3)")
    parser.add_argument("--body", type=int, default=0, help="POST a body of this many bytes (0: GET)")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    args = parser.parse_args()
    upstream, port = start_upstream()
    try:
        runner: Any = asyncio.run
        if not args.no_uvloop:
            try:
                import uvloop
                runner = uvloop.run
            except ImportError:
                pass
        loop_name = "asyncio" if runner is asyncio.run else "uvloop"
        print(f"upstream 127.0.0.1:{port}, {args.callers} callers, loop {loop_name}, "
              f"{'POST %d B' % args.body if args.body else 'GET'}, {args.rounds} x {args.duration}s", flush=True)
        results = runner(run(args, port))
    finally:
        if upstream.stdin is not None:
            upstream.stdin.close()
        try:
            upstream.wait(5)
        except subprocess.TimeoutExpired:
            upstream.kill()
    print("\nmedians:")
    base = None
    for name, rows in results.items():
        rps = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        base = base or rps
        print(f"  {name:24} {rps:9.0f} req/s {cpu:7.1f} µs CPU/req  ({rps / base:.2f}x)")


if __name__ == "__main__":
    main()
