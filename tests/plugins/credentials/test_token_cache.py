"""The token cache on its own, with a clock of the test's: one fetch in flight per
credential, background refresh of a still-valid token, waiting only when it
expired, a pause after failures, and library errors reduced to their type."""
from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from kong_py_plugins.credentials.errors import CredentialError
from kong_py_plugins.credentials.tokens import TokenSource


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Issuer:
    """A fetch function (run in a thread by the cache) issuing numbered tokens."""

    def __init__(self, clock: Clock, lifetime: float = 3600.0, delay: float = 0.0) -> None:
        self.clock, self.lifetime, self.delay = clock, lifetime, delay
        self.calls = 0
        self.threads: set[str] = set()
        self.error: Exception | None = None
        self.gate: threading.Event | None = None

    def __call__(self):
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(5)
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return f"token-{self.calls}", self.clock() + self.lifetime, None


async def test_one_fetch_for_concurrent_requests_in_a_thread():
    clock = Clock()
    issuer = Issuer(clock, delay=0.2)
    source = TokenSource("Azure", "azure_client_secret", issuer, clock)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    tokens = await asyncio.gather(*(source.get() for _ in range(50)))
    task.cancel()
    assert tokens == ["token-1"] * 50 and issuer.calls == 1
    assert threading.main_thread().name not in issuer.threads  # fetched off the event loop's thread
    assert ticks >= 10  # the loop went on running while the fetch slept


async def test_background_refresh_then_wait_when_expired():
    clock = Clock()
    issuer = Issuer(clock, lifetime=3600)
    source = TokenSource("Azure", "f", issuer, clock)
    assert await source.get() == "token-1"
    clock.now += 3600 - 300 - 1  # not yet at the refresh point (5 minutes before expiry)
    assert await source.get() == "token-1" and issuer.calls == 1
    clock.now += 2  # inside the refresh margin: still answered at once with the valid token
    issuer.gate = threading.Event()
    assert await source.get() == "token-1"
    assert await source.get() == "token-1"  # a second request does not start a second fetch
    issuer.gate.set()
    for _ in range(100):
        if source.token == "token-2":
            break
        await asyncio.sleep(0.01)
    assert await source.get() == "token-2" and issuer.calls == 2
    issuer.gate = None
    clock.now += 4000  # expired: the request waits for a new token
    assert await source.get() == "token-3"


async def test_short_tokens_refresh_at_half_life():
    clock = Clock()
    issuer = Issuer(clock, lifetime=120)
    source = TokenSource("Google Cloud", "f", issuer, clock)
    await source.get()
    assert source.refresh_at == pytest.approx(clock.now + 60)


async def test_failures_are_generic_paused_and_logged_once(caplog):
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    issuer = Issuer(clock)
    issuer.error = RuntimeError("server said: secret=kp-very-secret-thing")
    source = TokenSource("Azure", "azure_client_id, azure_client_secret, azure_tenant_id", issuer, clock)
    for _ in range(3):
        with pytest.raises(CredentialError) as info:
            await source.get()
        assert info.value.status == 502
        assert "kp-very-secret-thing" not in str(info.value)
        assert "azure_client_secret" in info.value.message
        assert info.value.__cause__ is None and info.value.__context__ is None
    assert issuer.calls == 1  # paused after the failure
    clock.now += 1.5
    with pytest.raises(CredentialError):
        await source.get()
    assert issuer.calls == 2
    logged = [r.getMessage() for r in caplog.records]
    assert not any("kp-very-secret-thing" in m for m in logged)
    assert sum("could not get" in m for m in logged) == 1
    assert any("RuntimeError" in m for m in logged)
    issuer.error = None
    clock.now += 1.5
    assert await source.get() == "token-3"
