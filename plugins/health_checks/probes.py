"""Active health checks: probes sent to targets on a schedule, once per node.

Each worker keeps a heap of the times its targets are due. A due probe is
claimed in the node's shared record first (its next due time moves forward
in the same transaction), so however many workers the node has, each target
is probed once per interval; if the worker that would have probed dies, the
others see the due time pass and take over.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import random
from typing import TYPE_CHECKING, Any

from kong_py import __version__
from kong_py.balancer.runtime import DISABLED
from kong_py.proxy.client import ConnectTimeout, ReadTimeout, UpstreamClient, UpstreamError, WriteTimeout

from .state import HEALTHY, Health

if TYPE_CHECKING:
    from kong_py.balancer.target import TargetInfo

    from .checker import Checker
    from .schema import Settings

log = logging.getLogger("kong_py.health")

#: seconds between looks at the heap of due probes
TICK = 0.05
USER_AGENT = f"kong_py/{__version__} (health check)"


class Prober:
    def __init__(self, checker: "Checker") -> None:
        self.checker = checker
        self.clock = checker.clock
        self.heap: list[tuple[float, str]] = []
        #: target id -> due time of its entry in the heap (other entries are stale)
        self.due: dict[str, float] = {}
        self.semaphores: dict[tuple[str, int], asyncio.Semaphore] = {}
        #: probes get connections of their own, never a pooled one of real traffic (with the
        #: same address restrictions: a probe must not reach what a request may not)
        self.client = UpstreamClient(keepalive_idle_timeout=1,
                                     address_policy=getattr(checker.worker, "address_policy", None))
        #: probes sent by this worker (for tests and debugging)
        self.sent = 0
        self.random = random.Random()

    # -- schedule ----------------------------------------------------------------
    def reschedule(self) -> None:
        """The configuration changed: start, stop or re-time probes.

        A target never probed gets its first probe within one period (as in
        Kong), at a random point of its second half, so targets configured
        together are not all probed at the same instant. A new period counts
        from the last probe.
        """
        checker = self.checker
        now = self.clock()
        for target_id in [t for t in self.due if t not in checker.targets]:
            del self.due[target_id]
        for target_id in checker.targets:
            period = self._period(target_id)
            if not period:
                self.due.pop(target_id, None)
                continue
            h = checker.mirror.get(target_id)
            if h is not None and h.probed_at:
                due = min(h.next_probe or h.probed_at + period, h.probed_at + period)
            elif target_id in self.due:
                due = min(self.due[target_id], now + period)
            else:
                due = now + period * (0.5 + self.random.random() / 2)
            self._schedule(target_id, due)

    def health_changed(self, target_id: str, h: Health) -> None:
        """A record changed: follow its due time (the period depends on health)."""
        if target_id not in self.checker.targets:
            return
        period = self._period(target_id, h)
        if not period:
            self.due.pop(target_id, None)
        else:
            self._schedule(target_id, h.next_probe or self.clock())

    def _period(self, target_id: str, h: Health | None = None) -> float:
        checker = self.checker
        target = checker.targets[target_id]
        settings = checker.settings.get(target_id)
        if settings is None or not probed(target):
            return 0.0
        if h is None:
            h = checker.mirror.get(target_id)
        return settings.interval(h is None or h.health == HEALTHY)

    def _schedule(self, target_id: str, due: float) -> None:
        if self.due.get(target_id) == due:
            return
        self.due[target_id] = due
        heapq.heappush(self.heap, (due, target_id))

    # -- running -------------------------------------------------------------------
    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(TICK)
                try:
                    self._send_due()
                except Exception:
                    log.exception("health probes failed to start")
        finally:
            await self.client.close()

    def _send_due(self) -> None:
        checker = self.checker
        checker.current()
        now = self.clock()
        heap = self.heap
        while heap and heap[0][0] <= now:
            due, target_id = heapq.heappop(heap)
            if self.due.get(target_id) != due:
                continue  # superseded
            del self.due[target_id]
            target = checker.targets.get(target_id)
            settings = checker.settings.get(target_id)
            if target is None or settings is None or not probed(target):
                continue
            claimed, following = checker.shared.claim_probe(
                target_id, now, lambda h: settings.interval(h.health == HEALTHY))
            if following:
                self._schedule(target_id, following)
            if claimed:
                self.sent += 1
                checker.worker.spawn(self._probe(target, settings))

    async def _probe(self, target: "TargetInfo", settings: "Settings") -> None:
        key = (target.upstream_id, settings.probe.concurrency)
        semaphore = self.semaphores.get(key)
        if semaphore is None:
            semaphore = self.semaphores[key] = asyncio.Semaphore(settings.probe.concurrency)
        upstream = self.checker.upstreams.get(target.id, {})
        try:
            async with semaphore:
                kind, reason = await probe(self.client, target, settings, upstream)
            if kind is not None and self.checker.targets.get(target.id) is not None:
                self.checker.count(target, settings, "active", kind, reason)
        except Exception:
            log.exception("health probe of %s failed", target.target)


def probed(target: "TargetInfo") -> bool:
    """DISABLED targets and those with weight 0 are never probed (DRAINING ones are)."""
    return target.weight > 0 and target.state != DISABLED


async def probe(client: UpstreamClient, target: "TargetInfo", settings: "Settings",
                upstream: dict[str, Any]) -> tuple[str | None, str]:
    """Send one probe: (counter kind or None, reason)."""
    p = settings.probe
    proxy_record = upstream.get("proxy")
    proxy = (proxy_record["protocol"], proxy_record["host"], proxy_record["port"]) if proxy_record else None
    tls = p.type in ("https", "grpcs") or (p.type == "http" and target.protocol == "https")
    if p.type in ("tcp", "grpc", "grpcs"):
        return await _connect_only(target, p.timeout, proxy)
    headers = [("Host", upstream.get("host_header") or target.host_header or target.host),
               ("User-Agent", USER_AGENT), ("Connection", "close")]
    headers.extend(target.headers)
    names = {name.lower() for name, _ in p.headers}
    headers = [(n, v) for n, v in headers if n.lower() not in names] + list(p.headers)
    try:
        response = await client.request(
            "GET", "https" if tls else "http", target.host, target.port, p.http_path, headers,
            connect_timeout=p.timeout, read_timeout=p.timeout, write_timeout=p.timeout, proxy=proxy,
            verify=p.https_verify_certificate, server_hostname=p.https_sni)
    except (ConnectTimeout, ReadTimeout, WriteTimeout):
        return "timeouts", "probe timed out"
    except (UpstreamError, OSError, ValueError) as exc:
        return "tcp_failures", f"probe failed: {type(exc).__name__}"
    status = response.status
    response.close()
    return settings.active.classify_status(status), f"probe status {status}"


async def _connect_only(target: "TargetInfo", timeout: float,
                        proxy: tuple[str, str, int] | None) -> tuple[str | None, str]:
    """A tcp probe: the connection opens (through the forward proxy's CONNECT when there is one)."""
    host, port = (proxy[1], proxy[2]) if proxy else (target.host, target.port)
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            if proxy is not None:
                authority = f"[{target.host}]:{target.port}" if ":" in target.host else f"{target.host}:{target.port}"
                writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
                line = await reader.readline()
                parts = line.split()
                if len(parts) < 2 or not parts[1].startswith(b"2"):
                    return "tcp_failures", "probe: the proxy refused the tunnel"
    except TimeoutError:
        return "timeouts", "probe timed out"
    except OSError as exc:
        return "tcp_failures", f"probe failed: {type(exc).__name__}"
    finally:
        if writer is not None:
            writer.close()
    return "success", "probe connected"
