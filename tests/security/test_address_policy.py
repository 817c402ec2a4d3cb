"""Target address restrictions: no service, target or forward proxy at the gateway's own
Admin API or in a denied range (cloud metadata by default), checked when written (400)
and when the proxy connects, after DNS resolution (502)."""
from __future__ import annotations

import asyncio
import ipaddress
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from kong_py.config import load_config
from kong_py.proxy.address_policy import AddressPolicy, parse_ip
from kong_py.proxy.client import ConnectError, UpstreamClient
from support import free_port, make_certs

T = {"connect_timeout": 2.0, "read_timeout": 2.0, "write_timeout": 2.0}


def admin_port(gateway: Any) -> int:
    return urlsplit(gateway.admin_url).port


# -- parsing and the policy itself ---------------------------------------------------------


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("2130706433", "127.0.0.1"),
    ("127.1", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("0x7f.1", "127.0.0.1"),
    ("0xa9fea9fe", "169.254.169.254"), ("2852039166", "169.254.169.254"),
    ("::ffff:169.254.169.254", "169.254.169.254"), ("[::1]", "::1"), ("fe80::1%eth0", "fe80::1"),
    ("example.com", None), ("abc", None), ("deadbeef", None), ("1e3", None), ("", None),
])
def test_hosts_are_read_as_a_resolver_reads_them(host: str, expected: str | None) -> None:
    parsed = parse_ip(host)
    assert (str(parsed) if parsed is not None else None) == expected


def policy(**settings: Any) -> AddressPolicy:
    config = load_config(env={}, **settings)
    result = AddressPolicy.from_config(config)
    assert result is not None
    return result


def test_the_admin_listener_and_its_equivalents() -> None:
    loopback = policy(admin_listen="127.0.0.1:8001")
    for address in ("127.0.0.1", "0.0.0.0", "::ffff:127.0.0.1"):
        assert loopback.denied(address, 8001), address
    for address, port in (("127.0.0.2", 8001), ("127.0.0.1", 8002), ("10.0.0.1", 8001)):
        assert loopback.denied(address, port) is None, (address, port)
    assert loopback.check_host("localhost", 8001) and loopback.check_host("api.localhost", 8001)
    assert loopback.check_host("example.com", 8001) is None  # names: checked after resolution

    wildcard = policy(admin_listen="0.0.0.0:8001", proxy_listen="0.0.0.0:8000")
    for address in ("127.0.0.1", "127.9.9.9", "::1", "0.0.0.0", "::"):
        assert wildcard.denied(address, 8001), address
    assert wildcard.denied("127.0.0.1", 8000) is None

    lan = policy(admin_listen="10.1.2.3:8001")
    assert lan.denied("10.1.2.3", 8001) and lan.denied("127.0.0.1", 8001) is None


def test_denied_ranges() -> None:
    default = policy()
    for address in ("169.254.169.254", "169.254.0.1", "fe80::1", "::ffff:169.254.169.254"):
        assert "denied range" in (default.denied(address, 80) or ""), address
    for address in ("127.0.0.1", "::1", "10.0.0.1", "192.168.1.1", "8.8.8.8"):
        assert default.denied(address, 80) is None, address
    private = policy(upstream_deny_addresses="10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7")
    assert private.denied("10.2.3.4", 80) and private.denied("fd00::1", 443)
    assert private.denied("127.0.0.1", 8001) is None  # admin_listen not listed: allowed
    assert AddressPolicy.from_config(load_config(env={}, upstream_deny_addresses="off")) is None


@pytest.mark.parametrize("value", ["10.0.0.0/33", "nonsense", "admin", "off,10.0.0.0/8", ","])
def test_bad_deny_lists_are_config_errors(value: str) -> None:
    from kong_py.config import ConfigError

    with pytest.raises(ConfigError, match="'upstream_deny_addresses'"):
        load_config(env={"GATEWAY_UPSTREAM_DENY_ADDRESSES": value})


# -- on write ----------------------------------------------------------------------------------


async def test_targets_at_the_admin_api_are_refused(gateway: Any) -> None:
    port = admin_port(gateway)
    assert (await gateway.admin("POST", "/upstreams", {"name": "pool"}))[0] == 201
    for target in (f"127.0.0.1:{port}", f"localhost:{port}", f"0.0.0.0:{port}", f"[::ffff:127.0.0.1]:{port}",
                   f"0x7f000001:{port}", f"2130706433:{port}", f"127.1:{port}"):
        status, body = await gateway.admin("POST", "/upstreams/pool/targets", {"target": target}, "form")
        assert status == 400, target
        assert body["name"] == "schema violation"
        assert "Admin API" in body["fields"]["target"], body
        assert body["message"].startswith("schema violation (target: ")
    status, body = await gateway.admin("POST", "/upstreams/pool/targets", {"host": "127.0.0.1", "port": port})
    assert status == 400 and "host" in body["fields"]
    # loopback itself stays allowed (the quick start's targets), and so do other ports
    for target in ("127.0.0.1:9001", f"127.0.0.2:{port}"):
        assert (await gateway.admin("POST", "/upstreams/pool/targets", {"target": target}))[0] == 201


async def test_services_and_proxies_at_the_admin_api_are_refused(gateway: Any) -> None:
    port = admin_port(gateway)
    for body in ({"name": "a", "host": "127.0.0.1", "port": port}, {"name": "b", "url": f"http://localhost:{port}/"},
                 {"name": "c", "url": f"http://0x7f000001:{port}"}):
        status, answer = await gateway.admin("POST", "/services", body)
        assert status == 400, body
        assert "Admin API" in answer["fields"]["host"]
    status, answer = await gateway.admin("POST", "/upstreams", {"name": "p", "proxy": {"host": "127.0.0.1", "port": port}})
    assert status == 400 and "Admin API" in answer["fields"]["proxy"]["host"]
    # the exposure: PATCH an existing service onto the Admin API
    assert (await gateway.admin("POST", "/services", {"name": "svc", "host": "127.0.0.1", "port": 9})) [0] == 201
    status, answer = await gateway.admin("PATCH", "/services/svc", {"port": port})
    assert status == 400
    # a service whose host is an upstream's name is not an address
    assert (await gateway.admin("POST", "/upstreams", {"name": "localhost"}))[0] == 201
    assert (await gateway.admin("POST", "/services", {"name": "up", "host": "localhost", "port": port}))[0] == 201


@pytest.mark.parametrize("target", ["169.254.169.254:80", "169.254.169.254", "[fe80::1]:80", "0xa9fea9fe:80",
                                    "2852039166:80", "[::ffff:169.254.169.254]:80"])
async def test_metadata_addresses_are_refused_by_default(gateway: Any, target: str) -> None:
    assert (await gateway.admin("POST", "/upstreams", {"name": "pool"}))[0] == 201
    status, body = await gateway.admin("POST", "/upstreams/pool/targets", {"target": target}, "form")
    assert status == 400
    assert "denied range" in body["fields"]["target"]
    status, body = await gateway.admin("POST", "/upstreams", {"name": "emb", "targets": [{"target": "127.0.0.1:1"},
                                                                                         {"target": target}]})
    assert status == 400 and body["fields"]["targets"][0] is None and "denied range" in body["fields"]["targets"][1]["target"]


async def test_the_deny_list_is_configurable(start_gateway: Any) -> None:
    open_gateway = await start_gateway(upstream_deny_addresses="off")
    port = admin_port(open_gateway)
    assert (await open_gateway.admin("POST", "/upstreams", {"name": "pool"}))[0] == 201
    for target in ("169.254.169.254:80", f"127.0.0.1:{port}"):
        assert (await open_gateway.admin("POST", "/upstreams/pool/targets", {"target": target}))[0] == 201
    private = await start_gateway(upstream_deny_addresses="admin_listen,10.0.0.0/8")
    status, body = await private.admin("POST", "/services", {"name": "s", "host": "10.1.2.3"})
    assert status == 400 and "10.0.0.0/8" in body["fields"]["host"]


# -- when connecting ---------------------------------------------------------------------------


async def test_a_denied_address_is_refused_after_resolution(start_gateway: Any, upstreams: Any, tmp_path: Path) -> None:
    """Entities stored before the range was denied (or names that now resolve into it)
    never get a connection: 502, and the target sees nothing."""
    backend = await upstreams("a")
    prefix = tmp_path / "node"
    first = await start_gateway(prefix=prefix)
    assert (await first.admin("POST", "/upstreams", {"name": "pool"}))[0] == 201
    assert (await first.admin("POST", "/upstreams/pool/targets", {"target": f"localhost:{backend.port}"}))[0] == 201
    assert (await first.admin("POST", "/services", {"name": "s", "host": "pool", "retries": 0}))[0] == 201
    assert (await first.admin("POST", "/services/s/routes", {"paths": ["/n"]}))[0] == 201
    assert (await first.admin("POST", "/services", {"name": "ip", "host": "127.0.0.1", "port": backend.port,
                                                    "retries": 0}))[0] == 201
    assert (await first.admin("POST", "/services/ip/routes", {"paths": ["/ip"]}))[0] == 201
    status, _, _ = await first.proxy("GET", "/n/x")
    assert status == 200 and backend.hits == 1
    await first.running.stop()

    second = await start_gateway(prefix=prefix, upstream_deny_addresses="admin_listen,127.0.0.0/8,::1/128")
    for path in ("/n/x", "/ip/x"):
        status, _, body = await second.proxy("GET", path)
        assert status == 502, body
        assert b"127" not in body  # nothing internal in the answer
    assert backend.hits == 1


async def test_the_client_connects_to_the_allowed_address_and_keeps_the_name_for_tls(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certs / "server.pem", certs / "server.key")
    names: list[str | None] = []
    server_context.sni_callback = lambda _obj, name, _ctx: names.append(name)  # type: ignore[assignment]

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context).start()
    trusted = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    try:
        # deny ::1 so "localhost" can only be reached at 127.0.0.1
        allow_v4 = AddressPolicy([ipaddress.ip_network("::1/128")])
        async with UpstreamClient(address_policy=allow_v4) as client:
            response = await client.request("GET", "https", "localhost", port, "/", [("Host", "localhost")],
                                            verify=trusted, **T)
            assert await response.read() == b"hi"
        assert names == ["localhost"]
        deny_all = AddressPolicy([ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")])
        async with UpstreamClient(address_policy=deny_all) as client:
            for host in ("localhost", "127.0.0.1", "0x7f000001"):
                with pytest.raises(ConnectError) as caught:
                    await client.request("GET", "https", host, port, "/", [("Host", "x")], verify=trusted, **T)
                assert caught.value.kind == "connect"
                assert "denied range" in str(caught.value)
        assert names == ["localhost"]  # refused before any connection was made
    finally:
        await runner.cleanup()
