"""Vault references, Kong style: ``{vault://env/NAME}`` resolved from the gateway's
environment when a request uses it; a missing one fails that request (500) without
calling the target; the Admin API shows references and masks literal values."""
from __future__ import annotations

import json
import logging
from urllib.parse import parse_qsl, urlsplit

from cred_fakes import lower, route_to

SECRET = "sk-from-the-environment-7777"


async def test_a_reference_inside_a_value_is_resolved_at_use(start_gateway, upstreams, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    gateway = await start_gateway()
    server = await upstreams("openai")
    await route_to(gateway, [{"target": server.address, "credentials": {
        "header_name": "Authorization", "header_value": "Bearer {vault://env/OPENAI_API_KEY}"}}])
    status, _, _ = await gateway.proxy("POST", "/r/v1/chat/completions", json={})
    assert status == 200
    assert lower(server.requests[-1]["headers"])["authorization"] == f"Bearer {SECRET}"
    # resolved at each use: a new value in the environment is the one sent
    monkeypatch.setenv("OPENAI_API_KEY", "sk-rotated-8888")
    await gateway.proxy("POST", "/r/v1/chat/completions", json={})
    assert lower(server.requests[-1]["headers"])["authorization"] == "Bearer sk-rotated-8888"


async def test_kong_name_mapping_and_json_keys(start_gateway, upstreams, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-mapped")
    monkeypatch.setenv("PROVIDER_SECRETS", json.dumps({"anthropic": "sk-ant-from-json"}))
    gateway = await start_gateway()
    server = await upstreams("s")
    await route_to(gateway, [{"target": server.address, "credentials": {
        "header_name": "x-api-key", "header_value": "{vault://env/provider-secrets/anthropic}",
        "param_name": "key", "param_value": "{vault://env/gemini-api-key}"}}])
    await gateway.proxy("GET", "/r/m")
    sent = server.requests[-1]
    assert lower(sent["headers"])["x-api-key"] == "sk-ant-from-json"
    assert dict(parse_qsl(urlsplit(sent["path"]).query)) == {"key": "AIza-mapped"}


async def test_a_missing_variable_fails_the_request_and_is_logged_once(start_gateway, upstreams, caplog):
    caplog.set_level(logging.DEBUG)
    gateway = await start_gateway()
    server = await upstreams("s")
    await route_to(gateway, [{"target": server.address, "credentials": {
        "header_name": "Authorization", "header_value": "Bearer {vault://env/KP_TEST_MISSING_KEY}"}}])
    for _ in range(3):
        status, headers, body = await gateway.proxy("POST", "/r/v1/chat/completions", json={})
        assert status == 500
        assert headers["Content-Type"].startswith("application/json")
        message = json.loads(body)["message"]
        assert "vault://env/KP_TEST_MISSING_KEY" in message and "credentials.header_value" in message
    assert server.hits == 0  # the target is never called
    logged = [r for r in caplog.records if "vault://env/KP_TEST_MISSING_KEY" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR
    assert "KP_TEST_MISSING_KEY is not set" in logged[0].getMessage()


async def test_a_value_unfit_for_a_header_is_refused(start_gateway, upstreams, monkeypatch):
    monkeypatch.setenv("KP_TEST_SPLIT", "sk-x\r\nX-Injected: 1")
    gateway = await start_gateway()
    server = await upstreams("s")
    await route_to(gateway, [{"target": server.address, "credentials": {
        "header_name": "x-api-key", "header_value": "{vault://env/KP_TEST_SPLIT}"}}])
    status, _, body = await gateway.proxy("GET", "/r/m")
    assert status == 500 and b"sk-x" not in body and b"credentials.header_value" in body
    assert server.hits == 0


async def test_references_are_shown_and_literals_masked(gateway, encoding):
    await gateway.admin("POST", "/upstreams", {"name": "u"}, encoding)
    literal = "sk-literal-secret-value-123456"
    status, body = await gateway.admin("POST", "/upstreams/u/targets", {
        "target": "127.0.0.1:9", "credentials": {
            "header_name": "Authorization", "header_value": "Bearer {vault://env/OPENAI_API_KEY}",
            "param_name": "key", "param_value": literal,
            "aws_access_key_id": "{vault://env/AWS_KEY_ID}", "aws_secret_access_key": "{vault://env/AWS_SECRET}",
            "gcp_service_account_json": "{vault://env/GCP_SERVICE_ACCOUNT}"}}, encoding)
    assert status == 201, body
    creds = body["credentials"]
    assert creds["header_value"] == "Bearer {vault://env/OPENAI_API_KEY}"
    assert creds["aws_access_key_id"] == "{vault://env/AWS_KEY_ID}"
    assert creds["gcp_service_account_json"] == "{vault://env/GCP_SERVICE_ACCOUNT}"
    assert creds["param_value"] == "****" + literal[-4:]
    # literal text around a reference (other than an auth scheme) keeps the value masked
    status, body = await gateway.admin("POST", "/upstreams/u/targets", {
        "target": "127.0.0.1:10", "credentials": {
            "header_name": "x-api-key", "header_value": "{vault://env/PREFIX}sk-literal-tail-abcdef"}}, encoding)
    assert status == 201 and "sk-literal-tail" not in json.dumps(body)
    # reading back and sending again keeps both
    target = body["id"]
    status, read = await gateway.admin("GET", f"/upstreams/u/targets/{target}")
    status, _ = await gateway.admin("PATCH", f"/upstreams/u/targets/{target}", {"credentials": read["credentials"]})
    stored = gateway.worker.store.get("targets", target)["credentials"]
    assert stored["header_value"] == "{vault://env/PREFIX}sk-literal-tail-abcdef"


async def test_malformed_references_are_refused_on_write(gateway, encoding):
    await gateway.admin("POST", "/upstreams", {"name": "u"}, encoding)
    for value, message in (
            ("Bearer {vault://env/}", "invalid vault reference"),
            ("{vault://env/KEY", "invalid vault reference"),
            ("{vault://aws/prod/key}", "unknown vault 'aws'")):
        status, body = await gateway.admin("POST", "/upstreams/u/targets", {
            "target": "127.0.0.1:9", "credentials": {"header_name": "x-api-key", "header_value": value}}, encoding)
        assert status == 400, body
        assert message in body["fields"]["credentials"]["header_value"]
