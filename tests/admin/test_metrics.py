"""/metrics: valid Prometheus text with every family, per upstream and target."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


async def test_metrics_parse_and_count_what_the_proxy_did(gateway, upstreams):
    a, b = await upstreams("a"), await upstreams("b")
    await gateway.admin("POST", "/upstreams", {"name": "weird-pool"})
    for server in (a, b):
        await gateway.admin("POST", "/upstreams/weird-pool/targets", {"target": server.address})
    await gateway.admin("POST", "/services", {"name": "s", "host": "weird-pool"})
    await gateway.admin("POST", "/services/s/routes", {"paths": ["/api"]})
    for _ in range(4):
        assert (await gateway.proxy("GET", "/api/x"))[0] == 200
    await gateway.admin("PUT", f"/upstreams/weird-pool/targets/{b.address}/unhealthy")
    status, text = await gateway.admin("GET", "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"kong_py_upstream_requests", "kong_py_upstream_retries", "kong_py_upstream_selected",
            "kong_py_upstream_in_flight", "kong_py_upstream_latency_seconds",
            "kong_py_upstream_target_health", "kong_py_proxy_requests"} <= set(families)
    ok = {s.labels["target"]: s.value for s in families["kong_py_upstream_requests"].samples
          if s.labels["status_class"] == "2xx"}
    assert ok == {a.address: 2.0, b.address: 2.0}
    counts = {s.labels["target"]: s.value for s in families["kong_py_upstream_latency_seconds"].samples
              if s.name.endswith("_count")}
    assert counts == {a.address: 2.0, b.address: 2.0}
    health = {(s.labels["target"], s.labels["state"]): s.value
              for s in families["kong_py_upstream_target_health"].samples}
    assert health[(b.address, "UNHEALTHY")] == 1.0 and health[(b.address, "HEALTHY")] == 0.0
    assert health[(a.address, "HEALTHCHECKS_OFF")] == 1.0
    assert all(s.labels["upstream"] == "weird-pool" for s in families["kong_py_upstream_selected"].samples)
