"""Secrets never leave the gateway.

Targets of every credential kind carry distinctive secrets (each holds
``LEAKCHECK``; the service account's private key is checked by a piece of it).
Traffic goes through every path: success, an upstream 5xx, an upstream timeout,
a refused connection, a token endpoint answering badly, a missing vault
variable, a value unfit for a header; then every Admin API read (and a rejected
write). Every response body and header the clients got, every log record of
every logger at DEBUG (tracebacks included), what reached stdout/stderr and the
access log are searched for the secrets. The targets answer without echoing
what they received: what a target says is its own business, not the gateway's.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp import web

from cred_fakes import route_to, service_account
from support import free_port

MARK = "LEAKCHECK"
HEADER_KEY = "sk-LEAKCHECK-header-7f3a9c5e"
QUERY_KEY = "LEAKCHECK-query-b81e44aa"
BODY_KEY = "LEAKCHECK-body-c92d11bb"
PATH_KEY = "LEAKCHECK-path-d00d42cc"
AWS_KEY_ID = "AKIALEAKCHECK0000001"
AWS_SECRET = "LEAKCHECK/aws/secret+key/e5e5e5e5"
AWS_TOKEN = "LEAKCHECK-aws-session-f6f6f6f6"
AZURE_SECRET = "LEAKCHECK-azure-secret-a1a1a1a1"
VAULT_VALUE = "LEAKCHECK-vault-value-9b9b9b9b"
BAD_HEADER_VALUE = "LEAKCHECK-split\r\nX-Evil: 1"


class Capture(logging.Handler):
    """Every record, formatted with its traceback, from every logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture):
    """caplog at DEBUG plus a handler of ours on the root and on every logger that
    does not propagate, every known logger set to DEBUG (restored after)."""
    caplog.set_level(logging.DEBUG)
    capture = Capture()
    attached: list[logging.Logger] = [logging.getLogger()]
    levels: dict[logging.Logger, int] = {}

    def widen() -> None:
        for logger in [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]:
            if isinstance(logger, logging.Logger):
                levels.setdefault(logger, logger.level)
                logger.setLevel(logging.DEBUG)
                if not logger.propagate and logger not in attached:
                    logger.addHandler(capture)
                    attached.append(logger)

    logging.getLogger().addHandler(capture)
    capture.widen = widen  # type: ignore[attr-defined]
    widen()
    yield capture
    for logger in attached:
        logger.removeHandler(capture)
    for logger, level in levels.items():
        logger.setLevel(level)


async def ok(request: web.Request, upstream: Any) -> web.Response:
    await request.read()
    return web.json_response({"choices": [{"message": {"content": "hi"}}]})


async def server_error(request: web.Request, upstream: Any) -> web.Response:
    await request.read()
    return web.json_response({"error": {"message": "internal error", "type": "server_error"}}, status=500)


async def slow(request: web.Request, upstream: Any) -> web.Response:
    await asyncio.sleep(2)
    return web.json_response({})


async def test_no_secret_in_any_response_or_log_line(start_gateway, upstreams, token_servers, certs, entra,
                                                     monkeypatch, all_logs, capfd, tmp_path):
    monkeypatch.setenv("KP_VAULT_KEY", VAULT_VALUE)
    monkeypatch.setenv("KP_BAD_HEADER", BAD_HEADER_VALUE)
    entra_server = await token_servers("LEAKCHECK-entra", tls=certs, failing_tenants={"tenant-bad"})
    entra(entra_server)  # one authority host for the process: the "bad" tenant is refused there
    google = await token_servers("LEAKCHECK-google")
    google_bad = await token_servers("LEAKCHECK-google-bad", fail=(500, "<html>upstream connect error</html>"))
    sa_info, public_key = service_account(f"{google.base}/google/token")
    google.google_public_key = public_key
    sa_bad, _ = service_account(f"{google_bad.base}/google/token")
    key_piece = sa_info["private_key"].splitlines()[5]  # a line of the key's base64
    secrets = [key_piece, sa_bad["private_key"].splitlines()[5], MARK]

    access_log = tmp_path / "access.log"
    gateway = await start_gateway(access_log=str(access_log), log_level="debug")
    all_logs.widen()
    behaviours = {"ok": await upstreams("ok", handler=ok), "5xx": await upstreams("err", handler=server_error),
                  "timeout": await upstreams("slow", handler=slow), "refused": None}
    kinds: dict[str, dict[str, Any]] = {
        "header": {"credentials": {"header_name": "Authorization", "header_value": f"Bearer {HEADER_KEY}",
                                   "param_name": "key", "param_value": QUERY_KEY}},
        "body": {"credentials": {"param_name": "api_key", "param_value": BODY_KEY, "param_location": "body"}},
        "path": {"path": "/v1/{key}/chat", "credentials": {"param_name": "key", "param_value": PATH_KEY,
                                                           "param_location": "path"}},
        "aws": {"credentials": {"aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET,
                                "aws_session_token": AWS_TOKEN, "aws_region": "us-west-2"}},
        "azure": {"credentials": {"azure_client_id": "client-1", "azure_client_secret": AZURE_SECRET,
                                  "azure_tenant_id": "tenant-ok"}},
        "gcp": {"credentials": {"gcp_service_account_json": json.dumps(sa_info)}},
        "vault": {"credentials": {"header_name": "x-api-key", "header_value": "{vault://env/KP_VAULT_KEY}"}},
    }
    routes: list[tuple[str, int | None]] = []
    for kind, settings in kinds.items():
        for behaviour, server in behaviours.items():
            address = server.address if server is not None else f"127.0.0.1:{free_port()}"
            name = f"{kind}-{behaviour}"
            await route_to(gateway, [{"target": address, **settings}], name=name, path=f"/{name}",
                           retries=0, read_timeout=300)
            routes.append((name, {"ok": 200, "5xx": 500, "timeout": 504, "refused": 502}[behaviour]))
    failing = {
        "azure-bad-token": {"credentials": {"azure_client_id": "client-2", "azure_client_secret": AZURE_SECRET + "x",
                                            "azure_tenant_id": "tenant-bad"}},
        "gcp-bad-token": {"credentials": {"gcp_service_account_json": json.dumps(sa_bad)}},
        "vault-missing": {"credentials": {"header_name": "Authorization",
                                          "header_value": "Bearer {vault://env/KP_NOT_SET}"}},
        "vault-bad-header": {"credentials": {"header_name": "x-api-key",
                                             "header_value": "{vault://env/KP_BAD_HEADER}"}},
        "aws-too-large": {"credentials": {"aws_access_key_id": AWS_KEY_ID, "aws_secret_access_key": AWS_SECRET,
                                          "aws_session_token": AWS_TOKEN}},
    }
    for name, settings in failing.items():
        await route_to(gateway, [{"target": behaviours["ok"].address, **settings}], name=name, path=f"/{name}",
                       retries=0)
        routes.append((name, {"azure-bad-token": 502, "gcp-bad-token": 502, "vault-missing": 500,
                              "vault-bad-header": 500, "aws-too-large": 413}[name]))

    await asyncio.sleep(0.6)  # the worker picks up the configuration

    seen: list[str] = []
    for name, expected in routes:
        big = name == "aws-too-large"
        data = json.dumps({"model": "m", "pad": "x" * (2 * 1024 * 1024 if big else 10)})
        async with gateway.session.post(f"{gateway.proxy_url}/{name}/v1/chat/completions?key=client-q", data=data,
                                        headers={"Content-Type": "application/json",
                                                 "Authorization": "Bearer client-own",
                                                 "x-api-key": "client-own"}) as resp:
            body = await resp.read()
            seen.append(f"{name} {resp.status} {dict(resp.headers)} {body.decode('utf-8', 'replace')}")
            assert resp.status == expected, (name, resp.status, body)

    # the Admin API, every way it shows targets, plus a rejected write with a secret in it
    for path in ["/", "/status", "/metrics", "/upstreams", "/plugins", "/plugins/enabled",
                 "/schemas/plugins/credentials", "/openapi.json"] + [
            p for name, _ in routes for p in (f"/upstreams/{name}", f"/upstreams/{name}/targets",
                                              f"/upstreams/{name}/targets/all", f"/upstreams/{name}/health")]:
        status, body = await gateway.admin("GET", path)
        assert status == 200, (path, body)
        seen.append(f"{path} {json.dumps(body) if not isinstance(body, str) else body}")
    status, targets = await gateway.admin("GET", "/upstreams/header-ok/targets")
    target_id = targets["data"][0]["id"]
    for payload in ({"weight": 70000, "credentials": {"header_value": HEADER_KEY}},
                    {"credentials": {"header_value": HEADER_KEY + "{vault://env/}"}},
                    {"credentials": {"gcp_service_account_json": "{" + key_piece}}):
        status, body = await gateway.admin("PATCH", f"/upstreams/header-ok/targets/{target_id}", payload)
        assert status == 400
        seen.append(json.dumps(body))

    assert behaviours["ok"].hits == 7  # one success per kind; no failing route reached its target
    out, err = capfd.readouterr()
    logs = all_logs.lines
    places = {"responses": seen, "logs": logs, "stdout/stderr": [out, err],
              "access log": [access_log.read_text() if access_log.exists() else ""]}
    leaks = [(where, secret, text[:300]) for where, texts in places.items() for text in texts
             for secret in secrets if secret in text]
    assert not leaks, leaks
    # the test saw what it should: the failures were logged (once each, without values)
    assert any("vault://env/KP_NOT_SET" in line for line in logs)
    assert any("could not get an access token from Azure" in line for line in logs)
    assert any("could not get an access token from Google Cloud" in line for line in logs)
    assert any("botocore" in line or "azure" in line for line in logs)  # library loggers were captured
