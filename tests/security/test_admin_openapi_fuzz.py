"""Schema-driven fuzzing of the Admin API: schemathesis against the ``/openapi.json``
it serves, on a real in-process gateway, must never get a 5xx.

Bounded so it fits in CI: a fixed number of examples per operation (valid and
invalid bodies, free and known path parameters), derandomized, without shrinking,
and a time budget.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

EXAMPLES = 10
BUDGET = 35.0  # seconds for the whole run


def _fuzz(admin_url: str, known: dict[str, str]) -> tuple[list[str], Counter[int]]:
    """Call every operation with generated cases; (descriptions of the 5xx answers, statuses seen)."""
    import requests

    schema = schemathesis.openapi.from_url(admin_url + "/openapi.json")
    session = requests.Session()
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + BUDGET
    operations = [result.ok() for result in schema.get_all_operations()]
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        for fixed in (False, True):
            for operation in operations:
                names = [p.name for p in operation.path_parameters]
                if fixed and not names:
                    continue  # nothing to fix: the free run covered it
                if time.monotonic() > deadline:
                    break
                params = {n: known[n] for n in names if n in known} if fixed else None

                @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                          phases=[Phase.generate], suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode, path_parameters=params))
                def run(case: Any) -> None:
                    if time.monotonic() > deadline:
                        return
                    response = case.call(base_url=admin_url, session=session, timeout=10)
                    statuses[response.status_code] += 1
                    if response.status_code >= 500:
                        failures.append(f"{case.method} {case.formatted_path} body={case.body!r}"
                                        f" -> {response.status_code} {response.text[:200]}")

                try:
                    run()
                except Unsatisfiable:
                    pass  # no invalid request exists for it (GET /status has nothing to get wrong)
    return failures, statuses


async def test_generated_requests_never_get_a_5xx(start_gateway: Any) -> None:
    gateway = await start_gateway()
    for path, body in (("/upstreams", {"name": "pool"}),
                       ("/upstreams/pool/targets", {"target": "127.0.0.1:9"}),
                       ("/services", {"name": "svc", "host": "pool"}),
                       ("/services/svc/routes", {"name": "r", "paths": ["/r"]})):
        status, answer = await gateway.admin("POST", path, body)
        assert status == 201, answer
    status, plugin = await gateway.admin("POST", "/plugins", {"name": "request-termination", "route": {"name": "r"}})
    assert status == 201, plugin
    known = {"upstream": "pool", "target": "127.0.0.1:9", "service": "svc", "route": "r",
             "plugin": plugin["id"], "name": "request-termination"}

    started = time.monotonic()
    failures, statuses = await asyncio.to_thread(_fuzz, gateway.admin_url, known)
    assert not failures, "\n".join(failures[:20])
    # the run really exercised the API: many calls, some accepted, many refused
    assert sum(statuses.values()) > 500, statuses
    assert statuses[200] and statuses[201] and statuses[400] and statuses[404], statuses
    assert time.monotonic() - started < 60
    status, _ = await gateway.admin("GET", "/status")
    assert status == 200
