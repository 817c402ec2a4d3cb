"""Soak: a gateway under mixed, misbehaving traffic keeps flat memory and descriptors.

Runs ``bin/gateway start`` (one worker, temporary prefix, loopback ports) in
front of upstreams in this process, and for ``--duration`` seconds (or until
``--requests``) sends from ``--clients`` concurrent clients a mix of:

* small GETs (most of the traffic);
* 2 MB answers, a third of which the client abandons after 64 KB;
* POSTs with a body;
* answers the upstream resets in the middle of the body;

while the configuration changes every 2 seconds (a target's weight, a route
added and removed). It samples the gateway's resident memory and open file
descriptors twice a second and prints them; with ``--check`` it exits 1 when
memory grew in the second half of the run (the allocator settles in the
first), descriptors grew between the end of the warm-up and the end, or a
request failed in a way the mix does not explain.

    .venv/bin/python bench/soak.py                      # 1,000,000 requests or 10 minutes
    .venv/bin/python bench/soak.py --duration 40 --check  # what the test suite runs
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
BIG = bytes(range(256)) * 8192  # 2 MiB


def _die_with_parent() -> None:  # in the gateway's process, between fork and exec
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    os.setsid()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- upstreams ---------------------------------------------------------------------------
async def _handler(request: web.Request) -> web.StreamResponse:
    kind = request.match_info["kind"]
    if kind == "big":
        return web.Response(body=BIG, content_type="application/octet-stream")
    if kind == "post":
        data = await request.read()
        return web.json_response({"size": len(data)})
    if kind == "reset":
        response = web.StreamResponse()
        response.content_length = len(BIG)
        await response.prepare(request)
        await response.write(BIG[:65536])
        assert request.transport is not None
        request.transport.abort()
        return response
    return web.json_response({"ok": True})


async def _start_upstreams(count: int) -> tuple[list[web.AppRunner], list[int]]:
    runners, ports = [], []
    for _ in range(count):
        app = web.Application()
        app.router.add_route("*", "/{kind}", _handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        ports.append(port)
    return runners, ports


# -- the gateway -----------------------------------------------------------------------------
def _sample(pid: int) -> tuple[float, int]:
    """(resident memory in MB, open descriptors) of a process."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def _admin(session: aiohttp.ClientSession, base: str, method: str, path: str, body: Any = None) -> Any:
    async with session.request(method, base + path, json=body) as response:
        text = await response.text()
        if response.status >= 400:
            raise RuntimeError(f"Admin API {method} {path}: {response.status} {text}")
        return json.loads(text) if text else None


# -- load -------------------------------------------------------------------------------------
class Tally:
    def __init__(self) -> None:
        self.done = 0
        self.outcomes: dict[str, int] = {}

    def count(self, what: str) -> None:
        self.done += 1
        self.outcomes[what] = self.outcomes.get(what, 0) + 1


async def _client(session: aiohttp.ClientSession, base: str, tally: Tally, until: float, limit: int,
                  rng: random.Random) -> None:
    while time.monotonic() < until and tally.done < limit:
        roll = rng.random()
        try:
            if roll < 0.80:
                async with session.get(f"{base}/soak/small") as r:
                    await r.read()
                    tally.count(f"small {r.status}")
            elif roll < 0.90:
                async with session.get(f"{base}/soak/big") as r:
                    if rng.random() < 0.33:
                        await r.content.readexactly(65536)
                        r.close()  # the client gives up mid-body
                        tally.count("big abandoned")
                    else:
                        data = await r.read()
                        tally.count("big whole" if len(data) == len(BIG) else "big short")
            elif roll < 0.95:
                async with session.post(f"{base}/soak/post", data=b"x" * rng.randint(1, 200_000)) as r:
                    await r.read()
                    tally.count(f"post {r.status}")
            else:
                async with session.get(f"{base}/soak/reset") as r:
                    await r.read()
                    tally.count("reset read whole")  # should not happen
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, asyncio.IncompleteReadError):
            tally.count("cut off (expected for resets)" if roll >= 0.95 else "cut off")
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.count(f"error {type(exc).__name__}")


async def _churn(session: aiohttp.ClientSession, admin: str, until: float) -> int:
    changes = 0
    while time.monotonic() < until:
        await asyncio.sleep(2)
        targets = (await _admin(session, admin, "GET", "/upstreams/soak/targets"))["data"]
        target = random.choice(targets)
        await _admin(session, admin, "PATCH", f"/upstreams/soak/targets/{target['id']}",
                     {"weight": random.randint(50, 150)})
        await _admin(session, admin, "POST", "/services/soak/routes", {"name": "extra", "paths": ["/extra"]})
        await _admin(session, admin, "DELETE", "/routes/extra")
        changes += 3
    return changes


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    runners, ports = await _start_upstreams(2)
    prefix = Path(tempfile.mkdtemp(prefix="kong_py-soak-"))
    proxy_port, admin_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_PREFIX=str(prefix), GATEWAY_PROXY_LISTEN=f"127.0.0.1:{proxy_port}",
               GATEWAY_ADMIN_LISTEN=f"127.0.0.1:{admin_port}", GATEWAY_LOG_LEVEL="error",
               GATEWAY_RETRY_BODY_LIMIT="65536")
    gateway = subprocess.Popen([str(REPO / "bin" / "gateway"), "start"], env=env, preexec_fn=_die_with_parent,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin, proxy = f"http://127.0.0.1:{admin_port}", f"http://127.0.0.1:{proxy_port}"
    samples: list[tuple[float, float, int]] = []
    try:
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
            deadline = time.monotonic() + 30
            while True:
                try:
                    await _admin(session, admin, "GET", "/status")
                    break
                except aiohttp.ClientError:
                    if time.monotonic() > deadline or gateway.poll() is not None:
                        raise RuntimeError("the gateway did not start") from None
                    await asyncio.sleep(0.1)
            await _admin(session, admin, "POST", "/upstreams", {"name": "soak"})
            for port in ports:
                await _admin(session, admin, "POST", "/upstreams/soak/targets", {"target": f"127.0.0.1:{port}"})
            await _admin(session, admin, "POST", "/services", {"name": "soak", "host": "soak", "retries": 1,
                                                               "read_timeout": 10000})
            await _admin(session, admin, "POST", "/services/soak/routes", {"paths": ["/soak"]})

            tally = Tally()
            started = time.monotonic()
            until = started + args.duration
            rng = random.Random(args.seed)

            async def sampler() -> None:
                while time.monotonic() < until and tally.done < args.requests:
                    rss, fds = _sample(gateway.pid)
                    samples.append((round(time.monotonic() - started, 1), rss, fds))
                    await asyncio.sleep(0.5)

            clients = [asyncio.ensure_future(_client(session, proxy, tally, until, args.requests,
                                                     random.Random(rng.random())))
                       for _ in range(args.clients)]
            churn = asyncio.ensure_future(_churn(session, admin, until))
            await asyncio.gather(sampler(), *clients)
            churn.cancel()
            elapsed = time.monotonic() - started
            await asyncio.sleep(1.0)  # let connections wind down, then the last sample
            rss, fds = _sample(gateway.pid)
            samples.append((round(time.monotonic() - started, 1), rss, fds))
    finally:
        os.killpg(gateway.pid, signal.SIGTERM)
        try:
            gateway.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(gateway.pid, signal.SIGKILL)
        for runner in runners:
            await runner.cleanup()
        shutil.rmtree(prefix, ignore_errors=True)
    warm = [s for s in samples if s[0] >= args.warmup] or samples
    baseline = warm[0]
    report = {
        "requests": tally.done, "seconds": round(elapsed, 1), "req_per_s": round(tally.done / elapsed),
        "outcomes": dict(sorted(tally.outcomes.items())),
        "rss_mb": {"after_warmup": round(baseline[1], 1), "peak": round(max(s[1] for s in warm), 1),
                   "end": round(samples[-1][1], 1)},
        "fds": {"after_warmup": baseline[2], "peak": max(s[2] for s in warm), "end": samples[-1][2]},
        "samples": samples,
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--requests", type=int, default=1_000_000, help="stop after this many (default 1M)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--warmup", type=float, default=10, help="seconds before the memory baseline (default 10)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--check", action="store_true", help="exit 1 when memory or descriptors grew")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    report = asyncio.run(soak(args))
    problems = []
    rss, fds = report["rss_mb"], report["fds"]
    # the allocator settles during the first half; after it, memory must stay flat
    samples = [x for x in report["samples"] if x[0] >= args.warmup]
    first_half = [x[1] for x in samples[:max(1, len(samples) // 2)]]
    rss["first_half_peak"] = round(max(first_half), 1)
    if rss["end"] > rss["first_half_peak"] + 10:
        problems.append(f"memory grew in the second half: {rss['first_half_peak']} -> {rss['end']} MB")
    if fds["end"] > fds["after_warmup"] + 10:
        problems.append(f"descriptors grew from {fds['after_warmup']} to {fds['end']}")
    unexpected = {k: v for k, v in report["outcomes"].items()
                  if not k.startswith(("small 200", "big ", "post 200", "cut off (expected"))
                  or k in ("big short",)}
    if unexpected:
        problems.append(f"unexpected outcomes: {unexpected}")
    report["problems"] = problems
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['requests']:,} requests in {report['seconds']} s ({report['req_per_s']:,}/s), "
              f"{args.clients} clients")
        print(f"resident memory MB: after warm-up {rss['after_warmup']}, peak {rss['peak']}, "
              f"first half's peak {rss['first_half_peak']}, end {rss['end']}")
        print(f"open descriptors:   after warm-up {fds['after_warmup']}, peak {fds['peak']}, end {fds['end']}")
        for name, count in report["outcomes"].items():
            print(f"  {name}: {count:,}")
        for problem in problems:
            print(f"PROBLEM: {problem}")
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    sys.exit(main())
