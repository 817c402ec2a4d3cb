"""Google Cloud: tokens by google-auth, from a service account key (its ``token_uri``
points at a fake token endpoint that checks the signed JWT) or from the
environment's credentials (GOOGLE_APPLICATION_CREDENTIALS, or a fake metadata
server through GCE_METADATA_HOST / GCE_METADATA_IP), cached and refreshed."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl

import aiohttp

from cred_fakes import lower, route_to, service_account
from support import free_port

REPO = Path(__file__).resolve().parents[3]
VERTEX_PATH = "/v1/projects/test-project/locations/us-central1/publishers/google/models/gemini-1.5-pro:generateContent"


def claims(assertion: str) -> dict:
    payload = assertion.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def test_service_account_json_token_cached(start_gateway, upstreams, token_servers):
    google = await token_servers("google")
    info, public_key = service_account(f"{google.base}/google/token")
    google.google_public_key = public_key
    gateway = await start_gateway()
    vertex = await upstreams("vertex")
    await route_to(gateway, [{"target": vertex.address, "provider": "gemini", "path": VERTEX_PATH,
                              "credentials": {"gcp_service_account_json": json.dumps(info)}}])
    results = await asyncio.gather(*(gateway.proxy("POST", "/r/c", json={"contents": []},
                                                   headers={"x-goog-api-key": "client"}) for _ in range(15)))
    assert [status for status, _, _ in results] == [200] * 15, results[0]
    assert len(google.token_requests) == 1
    token = google.issued[0]
    assert all(lower(r["headers"])["authorization"] == f"Bearer {token}" for r in vertex.requests)
    assert all("x-goog-api-key" not in lower(r["headers"]) for r in vertex.requests)
    form = dict(parse_qsl(google.token_requests[0]["body"]))
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    jwt_claims = claims(form["assertion"])  # signed with the throw-away key (the fake checked it)
    assert jwt_claims["iss"] == info["client_email"]
    assert jwt_claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"


async def test_service_account_token_refreshed_and_from_a_vault_reference(start_gateway, upstreams, token_servers,
                                                                          monkeypatch):
    google = await token_servers("google", expires_in=6)
    info, public_key = service_account(f"{google.base}/google/token")
    google.google_public_key = public_key
    monkeypatch.setenv("GCP_SERVICE_ACCOUNT", json.dumps(info))
    gateway = await start_gateway()
    vertex = await upstreams("vertex")
    await route_to(gateway, [{"target": vertex.address, "credentials": {
        "gcp_service_account_json": "{vault://env/GCP_SERVICE_ACCOUNT}"}}])
    for _ in range(3):
        assert (await gateway.proxy("POST", "/r/c", json={}))[0] == 200
    assert len(google.token_requests) == 1
    await asyncio.sleep(3.2)
    assert (await gateway.proxy("POST", "/r/c", json={}))[0] == 200
    assert len(google.token_requests) == 2
    assert lower(vertex.requests[-1]["headers"])["authorization"] == f"Bearer {google.issued[1]}"


async def test_environment_credentials_from_google_application_credentials(start_gateway, upstreams, token_servers,
                                                                           monkeypatch, tmp_path):
    google = await token_servers("google")
    info, public_key = service_account(f"{google.base}/google/token")
    google.google_public_key = public_key
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    gateway = await start_gateway()
    vertex = await upstreams("vertex")
    await route_to(gateway, [{"target": vertex.address, "credentials": {"gcp_use_service_account": True}}])
    for _ in range(4):
        status, _, body = await gateway.proxy("POST", "/r/c", json={})
        assert status == 200, body
    assert len(google.token_requests) == 1
    assert lower(vertex.requests[-1]["headers"])["authorization"] == f"Bearer {google.issued[0]}"


async def test_a_bad_token_answer_is_a_502(start_gateway, upstreams, token_servers):
    google = await token_servers("google", fail=(200, "<html>not json</html>"))
    info, _ = service_account(f"{google.base}/google/token")
    gateway = await start_gateway()
    vertex = await upstreams("vertex")
    await route_to(gateway, [{"target": vertex.address, "credentials": {"gcp_service_account_json": json.dumps(info)}}])
    status, _, body = await gateway.proxy("POST", "/r/c", json={})
    assert status == 502 and b"gcp_service_account_json" in body and b"PRIVATE KEY" not in body
    assert vertex.hits == 0


async def test_service_account_json_is_checked_on_write(gateway, encoding):
    await gateway.admin("POST", "/upstreams", {"name": "u"}, encoding)
    status, body = await gateway.admin("POST", "/upstreams/u/targets", {
        "target": "127.0.0.1:9", "credentials": {"gcp_service_account_json": "{not json, secret-ish"}}, encoding)
    assert status == 400
    assert body["fields"]["credentials"]["gcp_service_account_json"].startswith("expected a service account key")
    assert "secret-ish" not in json.dumps(body)


async def test_the_metadata_server_of_a_google_cloud_machine(upstreams, token_servers, tmp_path):
    """A gateway process started with the metadata server overrides google-auth reads at
    import (GCE_METADATA_HOST, GCE_METADATA_IP), as on a Google Cloud VM."""
    metadata = await token_servers("gce")
    vertex = await upstreams("vertex")
    proxy_port, admin_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEWAY_", "GCE_", "GOOGLE_")) and k != "NO_GCE_CHECK"}
    env.update(GATEWAY_PREFIX=str(tmp_path / "gw"), GATEWAY_PROXY_LISTEN=f"127.0.0.1:{proxy_port}",
               GATEWAY_ADMIN_LISTEN=f"127.0.0.1:{admin_port}", GATEWAY_DB_UPDATE_FREQUENCY="0.5",
               GCE_METADATA_HOST=f"127.0.0.1:{metadata.port}", GCE_METADATA_IP=f"127.0.0.1:{metadata.port}",
               CLOUDSDK_CONFIG=str(tmp_path / "no-gcloud"))
    pid_file = tmp_path / "gw" / "gateway.pid"
    started = subprocess.run([str(REPO / "bin" / "gateway"), "start", "-d"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        async with aiohttp.ClientSession() as session:
            admin = f"http://127.0.0.1:{admin_port}"
            async with session.post(f"{admin}/upstreams", json={"name": "vertex", "targets": [
                    {"target": vertex.address, "credentials": {"gcp_use_service_account": True}}]}) as resp:
                assert resp.status == 201, await resp.text()
            async with session.post(f"{admin}/services", json={"name": "v", "host": "vertex"}) as resp:
                assert resp.status == 201
            async with session.post(f"{admin}/services/v/routes", json={"paths": ["/r"]}) as resp:
                assert resp.status == 201
            statuses: list[int] = []

            async def call() -> bool:
                async with session.post(f"http://127.0.0.1:{proxy_port}/r/c", json={}) as resp:
                    statuses.append(resp.status)
                    return resp.status == 200

            for _ in range(100):  # the new route reaches the worker within its update interval
                if await call():
                    break
                await asyncio.sleep(0.1)
            for _ in range(3):
                assert await call()
        assert len(metadata.token_requests) == 1
        assert metadata.token_requests[0]["path"].endswith("/instance/service-accounts/default/token")
        assert lower(vertex.requests[-1]["headers"])["authorization"] == f"Bearer {metadata.issued[0]}"
    finally:
        subprocess.run([str(REPO / "bin" / "gateway"), "stop"], env=env, cwd=tmp_path, capture_output=True,
                       timeout=60)
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass




async def test_only_service_account_keys_are_accepted(gateway):
    """google-auth's other credential types (external accounts) read files or run
    programs named in their JSON: never from the Admin API."""
    await gateway.admin("POST", "/upstreams", {"name": "u"})
    external = {"type": "external_account", "audience": "x", "subject_token_type": "y",
                "token_url": "http://127.0.0.1:9/token", "credential_source": {"file": "/etc/passwd"}}
    status, body = await gateway.admin("POST", "/upstreams/u/targets", {
        "target": "127.0.0.1:9", "credentials": {"gcp_service_account_json": json.dumps(external)}})
    assert status == 400, body
