"""Target credentials are stored but never answered in full, and a masked value
read back from the API and sent again keeps the stored secret."""
from __future__ import annotations

import json

from admin_helpers import create

HEADER_SECRET = "sk-live-1234567890abcdefSECRET"
PARAM_SECRET = "param-secret-value-0987654321"
AWS_SECRET = "aws/SECRET+key/abcdefghijklmnop"


class Recorder:
    """Wraps ``gateway.admin`` and keeps every response body, to search them all."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.bodies: list[str] = []

    async def __call__(self, method: str, path: str, data=None, encoding: str = "json"):
        status, body = await self.gateway.admin(method, path, data, encoding)
        self.bodies.append(json.dumps(body))
        return status, body

    def leaked(self, *secrets: str) -> list[str]:
        return [body for body in self.bodies for secret in secrets if secret in body]


async def test_secrets_never_leave_the_store(gateway, encoding):
    admin = Recorder(gateway)
    await create(gateway, "/upstreams", {"name": "u"}, encoding)
    status, target = await admin("POST", "/upstreams/u/targets", {
        "target": "llm.example.com:443",
        "credentials": {"header_name": "Authorization", "header_value": HEADER_SECRET,
                        "param_name": "key", "param_value": PARAM_SECRET,
                        "aws_access_key_id": "AKIAEXAMPLEEXAMPLE", "aws_secret_access_key": AWS_SECRET}}, encoding)
    assert status == 201, target
    creds = target["credentials"]
    assert creds["header_name"] == "Authorization" and creds["param_name"] == "key"  # names are not secret
    assert HEADER_SECRET not in creds["header_value"] and creds["header_value"].startswith("****")
    ident = target["id"]
    stored = gateway.worker.store.get("targets", ident)["credentials"]
    assert (stored["header_value"], stored["param_value"], stored["aws_secret_access_key"]) == (
        HEADER_SECRET, PARAM_SECRET, AWS_SECRET)

    # every way of reading or writing the target answers masked values
    for method, path, data in [
        ("GET", f"/upstreams/u/targets/{ident}", None),
        ("GET", "/upstreams/u/targets/llm.example.com:443", None),
        ("GET", "/upstreams/u/targets", None),
        ("GET", "/upstreams/u/targets/all", None),
        ("GET", "/upstreams/u", None),
        ("GET", "/upstreams", None),
        ("GET", "/upstreams/u/health", None),
        ("PATCH", f"/upstreams/u/targets/{ident}", {"weight": 5}),
        ("POST", "/upstreams/u/targets", {"target": "llm.example.com:443", "weight": 6}),
        ("PUT", "/upstreams/u/targets/llm.example.com:443", {"weight": 7, "credentials": {
            "header_name": "Authorization", "header_value": HEADER_SECRET}}),
        ("PATCH", "/upstreams/u", {"slots": 20}),
        ("PUT", "/upstreams/u", {"slots": 30}),
        ("GET", "/metrics", None),
        ("GET", "/", None),
    ]:
        status, _ = await admin(method, path, data, encoding if data is not None else "json")
        assert status == 200, (method, path)
    # a rejected write does not echo the secret in its error either
    status, _ = await admin("PATCH", f"/upstreams/u/targets/{ident}", {"weight": 70000, "credentials": {
        "header_value": HEADER_SECRET}}, encoding)
    assert status == 400
    status, _ = await admin("POST", "/upstreams", {"name": "v", "targets": [{"target": "x.example.com", "credentials": {
        "header_name": "Authorization", "header_value": HEADER_SECRET, "bogus": True}}]})
    assert status == 400
    assert admin.leaked(HEADER_SECRET, PARAM_SECRET, AWS_SECRET) == []
    assert gateway.worker.store.get("targets", ident)["credentials"]["header_value"] == HEADER_SECRET


async def test_sending_back_the_masked_value_keeps_the_secret(gateway, encoding):
    await create(gateway, "/upstreams", {"name": "u"}, encoding)
    target = await create(gateway, "/upstreams/u/targets", {"target": "a.example.com:443", "credentials": {
        "header_name": "Authorization", "header_value": HEADER_SECRET, "param_name": "key",
        "param_value": PARAM_SECRET}}, encoding)
    ident = target["id"]

    def stored() -> dict:
        return gateway.worker.store.get("targets", ident)["credentials"]

    status, read = await gateway.admin("GET", f"/upstreams/u/targets/{ident}")
    masked = read["credentials"]
    # PATCH with the whole masked record (what a client that read and edits does)
    status, body = await gateway.admin("PATCH", f"/upstreams/u/targets/{ident}", {
        "weight": 11, "credentials": masked}, encoding)
    assert status == 200, body
    assert (stored()["header_value"], stored()["param_value"]) == (HEADER_SECRET, PARAM_SECRET)
    assert body["credentials"] == masked
    # PUT of the whole masked entity read back
    replay = {k: v for k, v in read.items() if k not in ("id", "created_at", "updated_at", "upstream")}
    status, body = await gateway.admin("PUT", f"/upstreams/u/targets/{ident}", replay, encoding)
    assert status == 200, body
    assert (stored()["header_value"], stored()["param_value"]) == (HEADER_SECRET, PARAM_SECRET)
    # POST of the existing target with the masked value is an update that keeps it too
    status, body = await gateway.admin("POST", "/upstreams/u/targets", {
        "target": "a.example.com:443", "credentials": {"header_name": "X-Api-Key",
                                                       "header_value": masked["header_value"]}}, encoding)
    assert status == 200, body
    assert stored()["header_value"] == HEADER_SECRET and stored()["header_name"] == "X-Api-Key"
    # a new value replaces the secret
    status, body = await gateway.admin("PATCH", f"/upstreams/u/targets/{ident}", {
        "credentials": {"header_value": "brand-new-secret-value-42"}}, encoding)
    assert status == 200 and "brand-new-secret-value-42" not in json.dumps(body)
    assert stored()["header_value"] == "brand-new-secret-value-42"
    assert stored()["param_value"] == PARAM_SECRET  # the rest of the record merged


async def test_masks_do_not_reveal_short_secrets(gateway, encoding):
    await create(gateway, "/upstreams", {"name": "u"}, encoding)
    target = await create(gateway, "/upstreams/u/targets", {"target": "a.example.com", "credentials": {
        "header_name": "Authorization", "header_value": "short"}}, encoding)
    assert target["credentials"]["header_value"] == "****"
    status, body = await gateway.admin("PATCH", f"/upstreams/u/targets/{target['id']}", {
        "credentials": {"header_value": "****"}}, encoding)
    assert status == 200
    assert gateway.worker.store.get("targets", target["id"])["credentials"]["header_value"] == "short"
