"""Admin API protection against browsers and strangers: Host, Origin and
Sec-Fetch-Site checks, the optional token, TLS and the body size cap.

Requests are written as raw bytes over a socket, so the test controls exactly
the headers a browser (or an attacker's page) would send.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from admin_raw import RawResponse, read_response, request
from support import make_certs

TOKEN = "s3cret-token-0123456789abcdef"
FORM = "Content-Type: application/x-www-form-urlencoded"


def port_of(gateway: Any) -> int:
    return urlsplit(gateway.admin_url).port


async def services(gateway: Any) -> list[str]:
    status, body = await gateway.admin("GET", "/services")
    assert status == 200, body
    return [s["name"] for s in body["data"]]


async def post(port: int, headers: str, name: str = "evil") -> RawResponse:
    """A browser-like form post creating a service, with the given extra header lines."""
    body = f"name={name}&host=example.com"
    head = f"POST /services HTTP/1.1\n{headers}\n{FORM}\nContent-Length: {len(body)}"
    return await request(port, head, body.encode())


# -- Host ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "LOCALHOST:{port}"])
async def test_loopback_names_with_the_port_are_accepted(gateway: Any, host: str) -> None:
    port = port_of(gateway)
    answer = await request(port, f"GET /status HTTP/1.1\nHost: {host.format(port=port)}")
    assert answer.status == 200, answer.body


@pytest.mark.parametrize("host", ["attacker.example:{port}", "attacker.example", "localhost",
                                  "127.0.0.1:1", "10.0.0.1:{port}", "localhost.attacker.example:{port}", "[::1"])
async def test_other_hosts_are_misdirected(gateway: Any, host: str) -> None:
    port = port_of(gateway)
    answer = await request(port, f"GET /status HTTP/1.1\nHost: {host.format(port=port)}")
    assert answer.status == 421
    assert answer.headers["content-type"].startswith("application/json")
    assert "does not answer to host" in answer.json()["message"]


async def test_dns_rebinding_cannot_create_a_service(gateway: Any) -> None:
    """A page whose name now resolves to 127.0.0.1 still sends its own name as Host."""
    port = port_of(gateway)
    answer = await post(port, f"Host: rebind.attacker.example:{port}")
    assert answer.status == 421
    assert await services(gateway) == []


async def test_more_than_one_host_header_is_refused(gateway: Any) -> None:
    port = port_of(gateway)
    answer = await request(port, f"GET /status HTTP/1.1\nHost: 127.0.0.1:{port}\nHost: attacker.example")
    assert answer.status == 400
    assert answer.json() == {"message": "Bad request: more than one Host header"}


async def test_admin_allowed_hosts_adds_names(start_gateway: Any) -> None:
    gateway = await start_gateway(admin_allowed_hosts="admin.example.com, ops.example.com:9999")
    port = port_of(gateway)
    for host, status in (("admin.example.com", 200), (f"admin.example.com:{port}", 200),
                         ("admin.example.com:443", 200), ("ops.example.com:9999", 200),
                         ("ops.example.com", 421), (f"ops.example.com:{port}", 421),
                         (f"localhost:{port}", 200), ("other.example.com", 421)):
        answer = await request(port, f"GET /status HTTP/1.1\nHost: {host}")
        assert answer.status == status, host
    # the same names count as the Admin API's own origin
    answer = await post(port, f"Host: admin.example.com\nOrigin: https://admin.example.com", name="ok")
    assert answer.status == 201, answer.body


async def test_a_star_turns_the_host_check_off_but_not_the_origin_check(start_gateway: Any) -> None:
    gateway = await start_gateway(admin_allowed_hosts="*")
    port = port_of(gateway)
    assert (await request(port, "GET /status HTTP/1.1\nHost: anything.example")).status == 200
    answer = await post(port, "Host: anything.example\nOrigin: https://evil.example")
    assert answer.status == 403
    answer = await post(port, "Host: anything.example\nOrigin: http://anything.example", name="ok")
    assert answer.status == 201

# -- cross-site browser requests ---------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost:3000",
                                    "http://127.0.0.1:{other}", "file://", "http://localhost:{port}/x"])
async def test_cross_site_form_posts_are_forbidden(gateway: Any, origin: str) -> None:
    """The CSRF of the issue: a page's form post to the Admin API created a service (201)."""
    port = port_of(gateway)
    answer = await post(port, f"Host: 127.0.0.1:{port}\nOrigin: {origin.format(port=port, other=port + 1)}")
    assert answer.status == 403, answer.body
    assert answer.json() == {"message": "Forbidden: cross-site requests to the Admin API are refused"}
    assert await services(gateway) == []


@pytest.mark.parametrize("site", ["cross-site", "same-site", "SAME-SITE", "bogus"])
async def test_cross_site_fetch_metadata_is_forbidden(gateway: Any, site: str) -> None:
    port = port_of(gateway)
    answer = await post(port, f"Host: localhost:{port}\nSec-Fetch-Site: {site}")
    assert answer.status == 403
    assert await services(gateway) == []


@pytest.mark.parametrize("headers", ["Origin: http://127.0.0.1:{port}", "Origin: http://localhost:{port}",
                                     "Sec-Fetch-Site: same-origin", "Sec-Fetch-Site: none", ""])
async def test_same_origin_and_non_browser_requests_pass(gateway: Any, headers: str) -> None:
    port = port_of(gateway)
    extra = f"Host: 127.0.0.1:{port}" + (f"\n{headers.format(port=port)}" if headers else "")
    answer = await post(port, extra, name="mine")
    assert answer.status == 201, answer.body
    assert await services(gateway) == ["mine"]


# -- token ------------------------------------------------------------------------------


async def test_a_token_is_required_when_set(start_gateway: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = await start_gateway(admin_token=TOKEN)
    port = port_of(gateway)
    base = f"GET /services HTTP/1.1\nHost: 127.0.0.1:{port}"
    for extra in ("", "\nAuthorization: Bearer wrong-token", f"\nAuthorization: Basic {TOKEN}",
                  f"\nKong-Admin-Token: {TOKEN}x", f"\nAuthorization: Bearer {TOKEN[:-1]}"):
        answer = await request(port, base + extra)
        assert answer.status == 401, extra
        assert answer.json() == {"message": "Unauthorized"}
        assert answer.headers["www-authenticate"].startswith("Bearer")
    for extra in (f"\nAuthorization: Bearer {TOKEN}", f"\nauthorization: bearer {TOKEN}",
                  f"\nKong-Admin-Token: {TOKEN}", f"\nKong-Admin-Token: nope\nAuthorization: Bearer {TOKEN}"):
        answer = await request(port, base + extra)
        assert answer.status == 200, extra
        assert TOKEN.encode() not in answer.body
    answer = await request(port, f"GET / HTTP/1.1\nHost: 127.0.0.1:{port}\nKong-Admin-Token: {TOKEN}")
    assert answer.status == 200 and TOKEN.encode() not in answer.body
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(gateway.running.config)


async def test_the_cli_health_check_sends_the_token(start_gateway: Any) -> None:
    from kong_py import cli

    gateway = await start_gateway(admin_token=TOKEN)
    config = gateway.running.config
    assert await asyncio.to_thread(cli._health, config, 2.0, True)
    wrong = dataclasses.replace(config, admin_token="another-token-0123456789")
    assert not await asyncio.to_thread(cli._health, wrong, 2.0, True)
    assert not await asyncio.to_thread(cli._health, dataclasses.replace(config, admin_token=None), 2.0, True)


def test_a_short_token_is_a_config_error_that_does_not_show_it() -> None:
    from kong_py.config import ConfigError, load_config

    with pytest.raises(ConfigError) as info:
        load_config(env={"GATEWAY_ADMIN_TOKEN": "short secret"})
    assert "short secret" not in str(info.value)
    assert info.value.key == "admin_token"


# -- body size --------------------------------------------------------------------------


async def test_a_declared_length_over_the_cap_is_refused_before_reading(start_gateway: Any) -> None:
    gateway = await start_gateway()  # default cap: 10 MiB
    port = port_of(gateway)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write((f"POST /services HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {300 * 1024 * 1024}\r\n\r\n").encode())
        await writer.drain()
        answer = await read_response(reader)  # no body byte was sent: the answer comes anyway
        assert answer.status == 413
        assert answer.json() == {"message": "Request size limit exceeded"}
    finally:
        writer.close()


async def test_a_chunked_body_is_cut_at_the_cap(start_gateway: Any) -> None:
    gateway = await start_gateway(admin_client_max_body_size=65536)
    port = port_of(gateway)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = b"x" * 16384
    try:
        writer.write((f"POST /services HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n").encode())
        for _ in range(64):  # 1 MiB in all, far more than the cap
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        answer = await read_response(reader)  # answered as soon as the cap was passed
        assert answer.status == 413
        assert answer.json() == {"message": "Request size limit exceeded"}
        # the rest of the body is read and dropped: the connection serves the next request
        writer.write(b"0\r\n\r\n" + f"GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert (await read_response(reader)).status == 200
    finally:
        writer.close()
    assert await services(gateway) == []


async def test_bodies_up_to_the_cap_are_accepted(start_gateway: Any) -> None:
    gateway = await start_gateway(admin_client_max_body_size=4096)
    status, _ = await gateway.admin("POST", "/services", {"name": "a", "host": "example.com", "tags": ["t" * 100]})
    assert status == 201
    status, body = await gateway.admin("POST", "/services", {"name": "b", "host": "example.com",
                                                              "tags": ["t" * 100] * 50})
    assert status == 413 and body == {"message": "Request size limit exceeded"}
    async with aiohttp.ClientSession() as session:  # multipart is counted too
        form = aiohttp.FormData()
        form.add_field("name", "c")
        form.add_field("host", "x" * 8000)
        async with session.post(gateway.admin_url + "/services", data=form) as resp:
            assert resp.status == 413
    assert await services(gateway) == ["a"]


# -- TLS --------------------------------------------------------------------------------


async def test_the_admin_api_over_tls(start_gateway: Any, tmp_path: Path) -> None:
    from kong_py import cli

    certs = make_certs(tmp_path)
    gateway = await start_gateway(admin_ssl_cert=str(certs / "server.pem"),
                                  admin_ssl_cert_key=str(certs / "server.key"), admin_token=TOKEN)
    port = port_of(gateway)
    trust = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    headers = {"Kong-Admin-Token": TOKEN}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"https://localhost:{port}/status", ssl=trust, headers=headers) as resp:
            assert resp.status == 200
        origin = {"Origin": f"https://localhost:{port}", **headers}
        async with session.post(f"https://localhost:{port}/services", ssl=trust, headers=origin,
                                data={"name": "s", "host": "example.com"}) as resp:
            assert resp.status == 201
        with pytest.raises(aiohttp.ClientError):  # plain HTTP is not served on it
            async with session.get(f"http://127.0.0.1:{port}/status", headers=headers) as resp:
                await resp.read()
    # the CLI talks TLS to it, with the token, and trusts exactly the configured certificate
    assert await asyncio.to_thread(cli._health, gateway.running.config, 2.0, True)


def test_tls_needs_both_files(tmp_path: Path) -> None:
    from kong_py.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="admin_ssl_cert_key"):
        load_config(env={}, admin_ssl_cert=str(tmp_path / "c.pem"))
