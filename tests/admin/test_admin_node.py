"""Node endpoints: ``GET /``, ``/status``, ``/plugins/enabled`` and ``/metrics``."""
from __future__ import annotations

import uuid

from kong_py import __version__

from admin_helpers import create


async def test_root_describes_the_node(gateway):
    status, info = await gateway.admin("GET", "/")
    assert status == 200, info
    assert info["version"] == __version__
    assert str(uuid.UUID(info["node_id"])) == info["node_id"] == gateway.worker.node_id
    assert isinstance(info["hostname"], str) and info["tagline"]
    available = info["plugins"]["available_on_server"]
    assert set(available) == set(gateway.worker.plugins.handlers)
    for name, plugin in available.items():
        assert set(plugin) == {"version", "priority"}, name
        assert plugin["priority"] == gateway.worker.plugins.handlers[name].PRIORITY
    assert info["plugins"]["enabled_in_cluster"] == []
    assert info["configuration"]["database"] == "sqlite"
    assert info["configuration"]["admin_listen"] == [str(gateway.worker.config.admin_listen)]


async def test_status(gateway):
    status, body = await gateway.admin("GET", "/status")
    assert status == 200, body
    assert body["database"] == {"reachable": True}
    assert isinstance(body["server"]["total_requests"], int)
    await gateway.proxy("GET", "/nothing-routed")
    status, after = await gateway.admin("GET", "/status")
    assert after["server"]["total_requests"] == body["server"]["total_requests"] + 1


async def test_enabled_plugins(gateway):
    status, body = await gateway.admin("GET", "/plugins/enabled")
    assert status == 200
    assert body == {"enabled_plugins": sorted(gateway.worker.plugins.handlers)}


async def test_metrics(gateway, encoding):
    await create(gateway, "/upstreams", {"name": "metered"}, encoding)
    await create(gateway, "/upstreams/metered/targets", {"target": "a.example.com:80"}, encoding)
    async with gateway.session.get(gateway.admin_url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    assert 'upstream="metered"' in text and 'target="a.example.com:80"' in text
