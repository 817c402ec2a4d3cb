"""Local stand-ins for the token endpoints and a SigV4-checking upstream, on 127.0.0.1.

- :class:`TokenServer` answers as Microsoft Entra ID (OpenID configuration and
  the v2.0 token endpoint, over TLS as azure-identity requires), as an App
  Service managed identity endpoint, as Google's OAuth token endpoint (it checks
  the service account's signed JWT with the public key) and as a GCE metadata
  server. It records every request and issues numbered tokens.
- :func:`sigv4_checker` makes an upstream handler that recomputes the request's
  AWS signature with botocore from what it received.
"""
from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from support import free_port


@dataclass
class TokenServer:
    prefix: str
    port: int = 0
    scheme: str = "http"
    runner: web.AppRunner | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: tokens issued, in order
    issued: list[str] = field(default_factory=list)
    expires_in: int = 3600
    #: seconds to wait before answering a token request
    delay: float = 0.0
    #: (status, body) to answer token requests with instead of a token
    fail: tuple[int, Any] | None = None
    #: the public key (PEM) that must have signed a Google JWT assertion
    google_public_key: bytes | None = None
    identity_header: str = "msi-header-value"
    #: Entra tenants whose token requests are refused (401 invalid_client)
    failing_tenants: set[str] = field(default_factory=set)

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def token_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["kind"] == "token"]

    def _token(self) -> str:
        token = f"{self.prefix}-access-token-{len(self.issued) + 1}"
        self.issued.append(token)
        return token

    async def _record(self, request: web.Request, kind: str) -> dict[str, Any]:
        body = await request.read()
        record = {"kind": kind, "method": request.method, "path": request.path, "query": dict(request.query),
                  "headers": dict(request.headers), "body": body.decode("utf-8", "replace"), "at": time.time()}
        self.requests.append(record)
        return record

    async def _answer(self, payload: dict[str, Any]) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            status, body = self.fail
            if isinstance(body, (dict, list)):
                return web.json_response(body, status=status)
            return web.Response(status=status, text=str(body))
        return web.json_response(payload)

    # -- Microsoft Entra ID ------------------------------------------------------------
    async def openid_configuration(self, request: web.Request) -> web.Response:
        await self._record(request, "discovery")
        tenant = request.match_info["tenant"]
        return web.json_response({
            "token_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/token",
            "authorization_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/authorize",
            "issuer": f"{self.base}/{tenant}/v2.0",
            "device_authorization_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/devicecode",
        })

    async def entra_token(self, request: web.Request) -> web.Response:
        await self._record(request, "token")
        if request.match_info["tenant"] in self.failing_tenants:
            return web.json_response({"error": "invalid_client",
                                      "error_description": "AADSTS7000215: Invalid client secret provided."},
                                     status=401)
        return await self._answer({"token_type": "Bearer", "expires_in": self.expires_in,
                                   "ext_expires_in": self.expires_in, "access_token": self._token_if_ok()})

    # -- App Service managed identity -----------------------------------------------------------
    async def managed_identity(self, request: web.Request) -> web.Response:
        await self._record(request, "token")
        if request.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return web.json_response({"error": "bad identity header"}, status=401)
        return await self._answer({"access_token": self._token_if_ok(), "token_type": "Bearer",
                                   "expires_on": str(int(time.time()) + self.expires_in),
                                   "resource": request.query.get("resource", "")})

    # -- Google OAuth token endpoint (service account JWT bearer grant) -------------------------------
    async def google_token(self, request: web.Request) -> web.Response:
        record = await self._record(request, "token")
        form = dict(pair.split("=", 1) for pair in record["body"].split("&") if "=" in pair)
        assertion = form.get("assertion", "")
        if self.google_public_key is not None and not verify_jwt(assertion, self.google_public_key):
            return web.json_response({"error": "invalid_grant", "error_description": "bad signature"}, status=400)
        return await self._answer({"access_token": self._token_if_ok(), "expires_in": self.expires_in,
                                   "token_type": "Bearer"})

    # -- GCE metadata server --------------------------------------------------------------------
    async def metadata(self, request: web.Request) -> web.Response:
        flavor = {"Metadata-Flavor": "Google"}
        path = request.path
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor header")
        if path.endswith("/token"):
            await self._record(request, "token")
            response = await self._answer({"access_token": self._token_if_ok(), "expires_in": self.expires_in,
                                           "token_type": "Bearer"})
            response.headers.update(flavor)
            return response
        await self._record(request, "metadata")
        if path.rstrip("/").endswith("service-accounts/default"):
            return web.json_response({"aliases": ["default"], "email": "gateway@test-project.iam.gserviceaccount.com",
                                      "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}, headers=flavor)
        if path.endswith("project/project-id"):
            return web.Response(text="test-project", headers=flavor)
        return web.Response(text="", headers=flavor)

    def _token_if_ok(self) -> str:
        return "" if self.fail is not None else self._token()

    async def start(self, tls: ssl.SSLContext | None = None) -> "TokenServer":
        app = web.Application()
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.entra_token)
        app.router.add_get("/msi/token", self.managed_identity)
        app.router.add_post("/google/token", self.google_token)
        app.router.add_route("*", "/computeMetadata/{tail:.*}", self.metadata)
        app.router.add_get("/", self.metadata)
        self.port = free_port()
        self.scheme = "https" if tls is not None else "http"
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=tls).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def server_tls(certs: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs / "server.pem", certs / "server.key")
    return context


# -- Google service accounts -----------------------------------------------------------------------

def service_account(token_uri: str, email: str = "gateway@test-project.iam.gserviceaccount.com"
                    ) -> tuple[dict[str, Any], bytes]:
    """A throw-away service account key (a fresh RSA key) and its public key (PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    info = {"type": "service_account", "project_id": "test-project", "private_key_id": "0123456789abcdef",
            "private_key": private_pem, "client_email": email, "client_id": "1234567890",
            "token_uri": token_uri}
    return info, public_pem


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jwt(token: str, public_pem: bytes) -> bool:
    """An RS256 JWT signed by the key of ``public_pem`` (what google-auth sends)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        header, payload, signature = token.split(".")
        if json.loads(_b64(header)).get("alg") != "RS256":
            return False
        key = serialization.load_pem_public_key(public_pem)
        key.verify(_b64(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, InvalidSignature):
        return False
    return True


# -- AWS SigV4, checked by botocore on the receiving side ------------------------------------------------

def check_sigv4(method: str, raw_path: str, headers: Any, body: bytes, secret_key: str,
                session_token: str | None = None) -> dict[str, Any]:
    """Recompute the signature of a received request with botocore; what was found."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return {"valid": False, "reason": "no SigV4 Authorization header"}
    parts = dict(item.strip().split("=", 1) for item in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    access_key, date, region, service, terminator = parts["Credential"].split("/")
    signed_names = parts["SignedHeaders"].split(";")
    signed = {name: ",".join(headers.getall(name)) for name in signed_names if name in headers}
    if len(signed) != len(signed_names):
        return {"valid": False, "reason": "a signed header was not received"}
    request = AWSRequest(method=method, url=f"http://{headers['Host']}{raw_path}", headers=signed, data=body)
    amz_date = headers.get("X-Amz-Date", "")
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret_key, session_token), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return {"valid": expected == parts["Signature"] and amz_date[:8] == date and terminator == "aws4_request",
            "access_key": access_key, "region": region, "service": service, "signed_headers": signed_names,
            "security_token": headers.get("X-Amz-Security-Token")}


def sigv4_checker(secret_key: str, session_token: str | None = None):
    """An ``upstreams(handler=...)`` handler answering whether the signature is valid."""

    async def handler(request: web.Request, upstream: Any) -> web.Response:
        body = await request.read()
        result = check_sigv4(request.method, request.raw_path, request.headers, body, secret_key, session_token)
        upstream.requests[-1]["sigv4"] = result
        return web.json_response(result, status=200 if result["valid"] else 403)

    return handler


# -- gateway set-up ----------------------------------------------------------------------------------

async def route_to(gateway: Any, targets: list[dict[str, Any]], name: str = "ai", path: str = "/r",
                   upstream: dict[str, Any] | None = None, route: dict[str, Any] | None = None,
                   **service: Any) -> None:
    """An upstream ``name`` with ``targets`` (JSON, credentials included), a service and a route ``path``."""
    status, body = await gateway.admin("POST", "/upstreams", {"name": name, "targets": targets, **(upstream or {})})
    assert status == 201, body
    status, body = await gateway.admin("POST", "/services", {"name": f"{name}-svc", "host": name, **service})
    assert status == 201, body
    status, body = await gateway.admin("POST", f"/services/{name}-svc/routes", {
        "name": f"{name}-route", "paths": [path], **(route or {})})
    assert status == 201, body


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
