"""``gateway start`` with ``workers = 2``: two processes, one node."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from hc_helpers import passive
from support import free_port

GATEWAY = Path(__file__).resolve().parents[3] / "bin" / "gateway"


class Node:
    def __init__(self, admin: str, proxy: str) -> None:
        self.admin_url, self.proxy_url = admin, proxy

    async def call(self, method: str, url: str, json: Any = None) -> tuple[int, Any, Any]:
        """One request on a connection of its own, so either worker may take it."""
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            async with session.request(method, url, json=json) as response:
                text = await response.text()
                body = await response.json(content_type=None) if text else None
                return response.status, body, response.headers.copy()

    async def admin(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        status, body, _ = await self.call(method, self.admin_url + path, json)
        return status, body


@pytest.fixture
async def two_workers(tmp_path: Path) -> AsyncIterator[Node]:
    admin, proxy = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_PREFIX=str(tmp_path / "servroot"), GATEWAY_WORKERS="2", GATEWAY_LOG_LEVEL="warn",
               GATEWAY_PROXY_LISTEN=f"127.0.0.1:{proxy}", GATEWAY_ADMIN_LISTEN=f"127.0.0.1:{admin}")
    process = subprocess.Popen([str(GATEWAY), "start"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    node = Node(f"http://127.0.0.1:{admin}", f"http://127.0.0.1:{proxy}")
    try:
        deadline = time.monotonic() + 30
        pids: set[int] = set()
        while len(pids) < 2:  # both workers answer
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the two workers did not come up"
            try:
                status, body = await node.admin("GET", "/")
                pids.add(body["pid"])
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        yield node
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def test_a_new_route_answers_on_every_worker_at_once(two_workers, upstreams):
    node = two_workers
    backend = await upstreams("backend")
    for n in range(3):  # each change, then at once many requests that either worker may take
        status, _ = await node.admin("POST", "/services", {"name": f"s{n}", "url": f"http://{backend.address}"})
        assert status == 201
        status, _ = await node.admin("POST", f"/services/s{n}/routes", {"paths": [f"/r{n}"]})
        assert status == 201
        statuses = await asyncio.gather(*(node.call("GET", f"{node.proxy_url}/r{n}/x") for _ in range(20)))
        assert [s for s, _, _ in statuses] == [200] * 20


async def test_workers_share_health(two_workers, upstreams):
    node = two_workers
    from aiohttp import web

    async def failing(request: web.Request, upstream: Any) -> web.Response:
        return web.json_response({"error": "boom"}, status=500)
    bad, good = await upstreams("bad", failing), await upstreams("good")
    status, _ = await node.admin("POST", "/upstreams", {"name": "pool", "healthchecks": passive(http_failures=3)})
    assert status == 201
    for server in (bad, good):
        assert (await node.admin("POST", "/upstreams/pool/targets", {"target": server.address}))[0] == 201
    assert (await node.admin("POST", "/services", {"name": "pool", "host": "pool", "retries": 0}))[0] == 201
    assert (await node.admin("POST", "/services/pool/routes", {"paths": ["/pool"]}))[0] == 201
    for _ in range(40):  # until three requests, on whichever workers, reached the failing target
        await node.call("GET", f"{node.proxy_url}/pool/x")
        if bad.hits == 3:
            break
    assert bad.hits == 3
    await asyncio.sleep(0.3)  # the in-flight counts the workers publish are current again
    answers = [(await node.admin("GET", "/upstreams/pool/health"))[1] for _ in range(10)]
    for answer in answers:  # the same on every worker
        assert {t["target"]: t["health"] for t in answer["data"]} == {bad.address: "UNHEALTHY",
                                                                      good.address: "HEALTHY"}
        assert answer == answers[0]
    results = [await node.call("GET", f"{node.proxy_url}/pool/x") for _ in range(10)]
    assert {h.get("X-Kong-Upstream-Target") for _, _, h in results} == {good.address}
    assert bad.hits == 3
