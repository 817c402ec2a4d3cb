"""Configuration written through the Admin API survives a restart, on SQLite
(the prefix's database file) and on PostgreSQL, and keeps proxying."""
from __future__ import annotations

import uuid
from typing import Any, AsyncIterator

import pytest

from admin_helpers import NOT_FOUND, create

PG_SERVER = "host=127.0.0.1 port=5432 dbname=test connect_timeout=3"
SECRET = "persisted-secret-value-123456"


async def _configure(gateway, upstream, encoding: str = "form") -> dict[str, Any]:
    """An upstream with a real target, a service on it and a route; the entities."""
    up = await create(gateway, "/upstreams", {"name": "persisted", "tags": ["keep"], "healthchecks": {
        "active": {"http_path": "/ready"}}}, encoding)
    target = await create(gateway, "/upstreams/persisted/targets", {
        "target": upstream.address, "weight": 7, "credentials": {"header_name": "x-api-key",
                                                                 "header_value": SECRET}}, encoding)
    service = await create(gateway, "/services", {"name": "svc", "host": "persisted"}, encoding)
    route = await create(gateway, "/services/svc/routes", {"name": "rt", "paths": ["/persist"]}, encoding)
    return {"upstream": up, "target": target, "service": service, "route": route}


async def _check_config(gateway, upstream, entities: dict[str, Any]) -> None:
    status, up = await gateway.admin("GET", "/upstreams/persisted")
    assert status == 200, up
    expected = dict(entities["upstream"])
    expected["targets"] = [entities["target"]]
    assert up == expected
    assert await gateway.admin("GET", "/services/svc") == (200, entities["service"])
    assert await gateway.admin("GET", "/routes/rt") == (200, entities["route"])
    stored = gateway.worker.store.get("targets", entities["target"]["id"])
    assert stored["credentials"]["header_value"] == SECRET
    before = upstream.hits
    status, _, body = await gateway.proxy("GET", "/persist/hello")
    assert status == 200, body
    assert upstream.hits == before + 1
    assert upstream.requests[-1]["path"] == "/hello"


async def _restart(start_gateway, gateway, **settings: Any):
    await gateway.running.stop()
    return await start_gateway(**settings)


async def test_sqlite_restart_keeps_config_and_proxying(start_gateway, upstreams, tmp_path, encoding):
    backend = await upstreams("backend")
    prefix = tmp_path / "node"
    gateway = await start_gateway(prefix=prefix)
    entities = await _configure(gateway, backend, encoding)
    await _check_config(gateway, backend, entities)
    gateway = await _restart(start_gateway, gateway, prefix=prefix)
    await _check_config(gateway, backend, entities)
    # and it can still be changed after the restart
    assert await gateway.admin("DELETE", "/routes/rt") == (204, None)
    assert await gateway.admin("DELETE", "/upstreams/persisted") == (204, None)
    gateway = await _restart(start_gateway, gateway, prefix=prefix)
    assert await gateway.admin("GET", "/upstreams/persisted") == (404, NOT_FOUND)
    assert gateway.worker.store.list("targets") == []
    assert (await gateway.admin("GET", "/services/svc"))[0] == 200


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """A DSN on a fresh schema of the local ``test`` database, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    errors = []
    for user in ("postgres", "root"):
        try:
            conn = psycopg.connect(f"{PG_SERVER} user={user}", autocommit=True)
            break
        except psycopg.OperationalError as exc:
            errors.append(f"{user}: {str(exc).strip()}")
    else:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432/test is not reachable ({'; '.join(errors)})")
    schema = f"kong_py_test_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"postgresql://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


async def test_postgres_crud_and_restart(start_gateway, upstreams, pg_dsn, tmp_path, encoding):
    backend = await upstreams("backend")
    settings = {"prefix": tmp_path / "pg-node", "database": "postgres", "pg_dsn": pg_dsn}
    gateway = await start_gateway(**settings)
    status, info = await gateway.admin("GET", "/")
    assert info["configuration"]["database"] == "postgres"
    assert (await gateway.admin("GET", "/status"))[1]["database"] == {"reachable": True}
    entities = await _configure(gateway, backend, encoding)
    await _check_config(gateway, backend, entities)

    # CRUD smoke: update, upsert, unique violation, list, delete with cascade
    status, body = await gateway.admin("PATCH", f"/upstreams/persisted/targets/{backend.address}", {"weight": 9},
                                       encoding)
    assert status == 200 and body["weight"] == 9
    entities["target"] = body
    status, body = await gateway.admin("POST", "/upstreams", {"name": "persisted"}, encoding)
    assert status == 409 and body["fields"] == {"name": "persisted"}
    status, extra = await gateway.admin("PUT", "/upstreams/extra", {"slots": 20}, encoding)
    assert status == 201 and extra["slots"] == 20
    await create(gateway, "/upstreams/extra/targets", {"target": "a.example.com:80"}, encoding)
    assert [u["name"] for u in (await gateway.admin("GET", "/upstreams?tags=keep"))[1]["data"]] == ["persisted"]
    assert await gateway.admin("DELETE", "/upstreams/extra") == (204, None)
    assert gateway.worker.store.list("targets", upstream_id=extra["id"]) == []
    status, body = await gateway.admin("DELETE", "/services/svc")
    assert status == 400 and body["fields"] == {"@referenced_by": "routes"}

    gateway = await _restart(start_gateway, gateway, **settings)
    await _check_config(gateway, backend, entities)
    assert await gateway.admin("GET", "/upstreams/extra") == (404, NOT_FOUND)
