"""Azure: Entra ID tokens by azure-identity (service principal or managed identity),
cached and refreshed, from fake token endpoints on 127.0.0.1 reached through the
library's own settings (AZURE_AUTHORITY_HOST, IDENTITY_ENDPOINT)."""
from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qsl

from cred_fakes import lower, route_to

TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
CLIENT_SECRET = "kp-azure-client-secret-~value~0042"
AZURE_PATH = "/openai/deployments/gpt-4o/chat/completions"


def principal(**extra):
    return {"azure_client_id": CLIENT_ID, "azure_client_secret": CLIENT_SECRET, "azure_tenant_id": TENANT, **extra}


async def test_service_principal_token_is_fetched_once_for_many_requests(start_gateway, upstreams, token_servers,
                                                                         certs, entra):
    entra_server = await token_servers("entra", tls=certs)
    entra(entra_server)
    gateway = await start_gateway()
    azure = await upstreams("azure")
    await route_to(gateway, [{"target": azure.address, "provider": "azure", "path": AZURE_PATH,
                              "credentials": principal()}])
    # many concurrent requests while no token is cached: one fetch, all wait for it
    results = await asyncio.gather(*(gateway.proxy("POST", "/r/c?api-version=2024-10-21", json={"n": i},
                                                   headers={"api-key": "client-key"}) for i in range(20)))
    assert [status for status, _, _ in results] == [200] * 20
    for _ in range(5):
        assert (await gateway.proxy("POST", "/r/c", json={}))[0] == 200
    assert len(entra_server.token_requests) == 1
    token = entra_server.issued[0]
    assert all(lower(r["headers"])["authorization"] == f"Bearer {token}" for r in azure.requests)
    assert all("api-key" not in lower(r["headers"]) for r in azure.requests)
    form = dict(parse_qsl(entra_server.token_requests[0]["body"]))
    assert form["grant_type"] == "client_credentials" and form["client_id"] == CLIENT_ID
    assert form["scope"] == "https://cognitiveservices.azure.com/.default"
    assert entra_server.token_requests[0]["path"] == f"/{TENANT}/oauth2/v2.0/token"


async def test_a_token_near_its_expiry_is_replaced(start_gateway, upstreams, token_servers, certs, entra):
    """Real time, a short-lived token: past its refresh point the next request gets a
    new one (the background refresh of a still-valid token is in test_token_cache.py)."""
    entra_server = await token_servers("entra", tls=certs, expires_in=6)
    entra(entra_server)
    gateway = await start_gateway()
    azure = await upstreams("azure")
    await route_to(gateway, [{"target": azure.address, "credentials": principal()}])
    for _ in range(3):
        assert (await gateway.proxy("POST", "/r/c", json={}))[0] == 200
    assert len(entra_server.token_requests) == 1
    await asyncio.sleep(3.2)
    assert (await gateway.proxy("POST", "/r/c", json={}))[0] == 200
    assert len(entra_server.token_requests) == 2
    assert lower(azure.requests[-1]["headers"])["authorization"] == f"Bearer {entra_server.issued[1]}"


async def test_managed_identity(start_gateway, upstreams, token_servers, monkeypatch):
    identity = await token_servers("msi")
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{identity.base}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", identity.identity_header)
    gateway = await start_gateway()
    azure = await upstreams("azure")
    await route_to(gateway, [{"target": azure.address, "credentials": {"azure_use_managed_identity": True}}])
    for _ in range(3):
        status, _, body = await gateway.proxy("POST", "/r/c", json={})
        assert status == 200, body
    assert len(identity.token_requests) == 1
    assert identity.token_requests[0]["query"]["resource"] == "https://cognitiveservices.azure.com"
    assert lower(azure.requests[-1]["headers"])["authorization"] == f"Bearer {identity.issued[0]}"


async def test_a_failing_token_endpoint_answers_502_without_calling_the_target(start_gateway, upstreams,
                                                                                token_servers, certs, entra, caplog):
    entra_server = await token_servers("entra", tls=certs, fail=(401, {
        "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}))
    entra(entra_server)
    gateway = await start_gateway()
    azure = await upstreams("azure")
    await route_to(gateway, [{"target": azure.address, "credentials": principal()}])
    status, _, body = await gateway.proxy("POST", "/r/c", json={})
    assert status == 502, body
    assert b"azure_client_secret" in body and CLIENT_SECRET.encode() not in body
    assert azure.hits == 0
    # the next requests within a second fail at once, without asking the token endpoint again
    fetched = len(entra_server.token_requests)
    assert (await gateway.proxy("POST", "/r/c", json={}))[0] == 502
    assert len(entra_server.token_requests) == fetched
    # once the endpoint works again, so do the requests
    entra_server.fail = None
    await asyncio.sleep(1.1)
    status, _, body = await gateway.proxy("POST", "/r/c", json={})
    assert status == 200, body
    failures = [r.getMessage() for r in caplog.records if "could not get an access token from Azure" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].endswith(": ClientAuthenticationError")  # the type, not the library's message


async def test_the_event_loop_is_not_blocked_by_a_slow_token_endpoint(start_gateway, upstreams, token_servers,
                                                                      certs, entra):
    entra_server = await token_servers("entra", tls=certs, delay=1.5)
    entra(entra_server)
    gateway = await start_gateway()
    azure = await upstreams("azure")
    plain = await upstreams("plain")
    await route_to(gateway, [{"target": azure.address, "credentials": principal()}])
    await route_to(gateway, [{"target": plain.address}], name="plain", path="/plain")
    slow = asyncio.ensure_future(gateway.proxy("POST", "/r/c", json={}))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    for _ in range(5):  # served while the token fetch is still waiting for its answer
        assert (await gateway.proxy("GET", "/plain/x"))[0] == 200
    assert time.monotonic() - started < 1.0
    assert not slow.done()
    assert (await slow)[0] == 200
