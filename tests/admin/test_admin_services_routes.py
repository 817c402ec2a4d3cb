"""Services and routes: CRUD, upsert, merge, references and Kong's messages."""
from __future__ import annotations

from admin_helpers import NOT_FOUND, create, schema_violation, violation

ROUTE_NEEDS_MATCH = ("must set one of 'methods', 'hosts', 'headers', 'paths' "
                     "when 'protocols' is 'http' or 'https'")


async def test_service_crud(gateway, encoding):
    status, svc = await gateway.admin("POST", "/services", {"name": "billing", "url": "https://api.example.com:8443/v1",
                                                            "tags": ["team-a"]}, encoding)
    assert status == 201, svc
    assert {k: svc[k] for k in ("name", "protocol", "host", "port", "path", "retries", "connect_timeout",
                                 "read_timeout", "write_timeout", "tags", "enabled")} == {
        "name": "billing", "protocol": "https", "host": "api.example.com", "port": 8443, "path": "/v1",
        "retries": 5, "connect_timeout": 60000, "read_timeout": 60000, "write_timeout": 60000,
        "tags": ["team-a"], "enabled": True}
    assert isinstance(svc["created_at"], int) and svc["updated_at"] >= svc["created_at"]
    assert await gateway.admin("GET", "/services/billing") == (200, svc)
    assert await gateway.admin("GET", f"/services/{svc['id']}") == (200, svc)

    status, patched = await gateway.admin("PATCH", "/services/billing", {"retries": 2, "path": None}, encoding)
    assert status == 200, patched
    assert (patched["retries"], patched["path"], patched["host"], patched["port"]) == (2, None, "api.example.com", 8443)
    assert patched["id"] == svc["id"] and patched["created_at"] == svc["created_at"]

    status, listing = await gateway.admin("GET", "/services")
    assert status == 200 and listing == {"data": [patched], "next": None}
    status, moved = await gateway.admin("PATCH", "/services/billing", {"url": "http://other.example.com/x"}, encoding)
    assert status == 200 and (moved["protocol"], moved["host"], moved["port"], moved["path"]) == (
        "http", "other.example.com", 80, "/x")
    status, moved = await gateway.admin("PATCH", "/services/billing", {"url": "https://third.example.com"}, encoding)
    assert status == 200 and (moved["host"], moved["port"], moved["path"]) == ("third.example.com", 443, None)
    assert await gateway.admin("DELETE", "/services/billing") == (204, None)
    assert await gateway.admin("GET", f"/services/{svc['id']}") == (404, NOT_FOUND)
    assert gateway.worker.store.get("services", svc["id"]) is None


async def test_service_validation(gateway, encoding):
    cases = [
        ({"name": "s"}, violation("host", "required field missing")),
        ({"host": "example.com", "port": "eighty"}, violation("port", "expected an integer")),
        ({"host": "example.com", "port": 70000}, violation("port", "value should be between 0 and 65535")),
        ({"host": "example.com", "protocol": "ftp"}, violation("protocol", "expected one of: http, https")),
        ({"host": "example.com", "colour": "red"}, violation("colour", "unknown field")),
        ({"host": "example.com", "path": "v1"}, violation("path", "should start with: /")),
        ({"host": "example.com", "retries": 99999}, violation("retries", "value should be between 0 and 32767")),
        ({"host": "example.com", "name": "a b"},
         violation("name", "invalid value 'a b': it must only contain alphanumeric and '., -, _, ~' characters")),
        ({"url": "http://"}, violation("host", "required field missing")),
        ({"url": "ftp://files.example.com"}, violation("protocol", "expected one of: http, https")),
        ({"url": "http://example.com:99999"}, violation("port", "value should be between 0 and 65535")),
        ({"url": "http://example.com:web/"}, violation("port", "expected an integer")),
        ({"port": "x", "colour": "red"}, schema_violation(
            {"colour": "unknown field", "host": "required field missing", "port": "expected an integer"},
            "3 schema violations (colour: unknown field; host: required field missing; port: expected an integer)")),
    ]
    for data, expected in cases:
        assert await gateway.admin("POST", "/services", data, encoding) == (400, expected), data
    assert (await gateway.admin("GET", "/services"))[1]["data"] == []


async def test_service_name_is_unique(gateway, encoding):
    first = await create(gateway, "/services", {"name": "dup", "host": "a.example.com"}, encoding)
    expected = {"code": 5, "name": "unique constraint violation",
                "message": "UNIQUE violation detected on '{name=\"dup\"}'", "fields": {"name": "dup"}}
    assert await gateway.admin("POST", "/services", {"name": "dup", "host": "b.example.com"}, encoding) == (409, expected)
    await create(gateway, "/services", {"name": "other", "host": "b.example.com"}, encoding)
    assert await gateway.admin("PATCH", "/services/other", {"name": "dup"}, encoding) == (409, expected)
    assert (await gateway.admin("GET", "/services/dup"))[1]["host"] == first["host"]


async def test_service_put_is_an_upsert(gateway, encoding):
    status, created = await gateway.admin("PUT", "/services/put-me", {"host": "a.example.com", "port": 8080,
                                                                      "retries": 1}, encoding)
    assert status == 201, created
    assert created["name"] == "put-me"  # the name comes from the URL
    status, replaced = await gateway.admin("PUT", "/services/put-me", {"host": "b.example.com"}, encoding)
    assert status == 200, replaced
    assert replaced["id"] == created["id"] and replaced["name"] == "put-me"
    # fields not given fall back to their defaults
    assert (replaced["host"], replaced["port"], replaced["retries"]) == ("b.example.com", 80, 5)
    assert await gateway.admin("PUT", "/services/put-me", {"host": "c.example.com", "name": "other"}, encoding) == (
        400, violation("name", "value 'other' does not match the one in the URL 'put-me'"))
    ident = "6b8a5e2c-3b8e-4d2b-9a57-0f6f1d1b2c3d"
    status, by_id = await gateway.admin("PUT", f"/services/{ident}", {"host": "d.example.com", "name": "by-id"}, encoding)
    assert status == 201 and by_id["id"] == ident
    status, by_id = await gateway.admin("PUT", f"/services/{ident}", {"host": "e.example.com", "name": "renamed"}, encoding)
    assert status == 200 and (by_id["id"], by_id["name"], by_id["host"]) == (ident, "renamed", "e.example.com")
    assert len((await gateway.admin("GET", "/services"))[1]["data"]) == 2


async def test_form_empty_value_means_null(gateway):
    await create(gateway, "/services", {"name": "s", "host": "example.com", "path": "/p", "tags": ["x"]})
    status, patched = await gateway.admin("PATCH", "/services/s", {"path": "", "tags": ""}, "form")
    assert status == 200, patched
    assert patched["path"] is None and patched["tags"] is None
    # on a field that cannot be null, null means "back to the default"
    status, patched = await gateway.admin("PATCH", "/services/s", {"retries": ""}, "form")
    assert status == 200 and patched["retries"] == 5


async def test_routes_nested_under_services(gateway, encoding):
    svc = await create(gateway, "/services", {"name": "s", "host": "example.com"}, encoding)
    other = await create(gateway, "/services", {"name": "t", "host": "example.org"}, encoding)
    status, route = await gateway.admin("POST", "/services/s/routes", {
        "name": "r", "paths": ["/api"], "methods": ["GET", "POST"], "hosts": ["example.com"],
        "headers": {"x-version": ["1"]}, "strip_path": False}, encoding)
    assert status == 201, route
    assert route["service"] == {"id": svc["id"]}
    assert (route["paths"], route["methods"], route["hosts"], route["headers"], route["strip_path"]) == (
        ["/api"], ["GET", "POST"], ["example.com"], {"x-version": ["1"]}, False)
    assert route["protocols"] == ["http", "https"] and route["preserve_host"] is False
    await create(gateway, "/services/t/routes", {"name": "r2", "paths": ["/other"]}, encoding)

    status, listing = await gateway.admin("GET", "/services/s/routes")
    assert status == 200 and [r["name"] for r in listing["data"]] == ["r"]
    assert [r["name"] for r in (await gateway.admin("GET", f"/services/{other['id']}/routes"))[1]["data"]] == ["r2"]
    assert {r["name"] for r in (await gateway.admin("GET", "/routes"))[1]["data"]} == {"r", "r2"}
    assert await gateway.admin("GET", "/services/s/routes/r") == (200, route)
    assert await gateway.admin("GET", "/routes/r/service") == (200, svc)

    status, patched = await gateway.admin("PATCH", "/services/s/routes/r", {"paths": ["/v2", "/v3"]}, encoding)
    assert status == 200 and patched["paths"] == ["/v2", "/v3"] and patched["methods"] == ["GET", "POST"]
    status, put = await gateway.admin("PUT", "/services/s/routes/r3", {"paths": ["/three"]}, encoding)
    assert status == 201 and put["service"] == {"id": svc["id"]} and put["name"] == "r3"
    assert await gateway.admin("DELETE", "/services/s/routes/r3") == (204, None)
    assert await gateway.admin("GET", "/routes/r3") == (404, NOT_FOUND)


async def test_route_validation(gateway, encoding):
    await create(gateway, "/services", {"name": "s", "host": "example.com"}, encoding)
    entity_error = schema_violation({"@entity": [ROUTE_NEEDS_MATCH]}, f"schema violation ({ROUTE_NEEDS_MATCH})")
    assert await gateway.admin("POST", "/services/s/routes", {"name": "empty"}, encoding) == (400, entity_error)
    assert await gateway.admin("POST", "/routes", {"strip_path": True}, encoding) == (400, entity_error)
    cases = [
        ({"paths": ["api"]}, schema_violation({"paths": "should start with: / (fixed path) or ~/ (regex path)"},
                                              "schema violation (paths: should start with: / (fixed path) "
                                              "or ~/ (regex path))")),
        ({"paths": ["/a"], "protocols": ["gopher"]}, violation("protocols", "expected one of: http, https")),
        ({"paths": ["/a"], "strip_path": "maybe"}, violation("strip_path", "expected a boolean")),
        ({"paths": ["/a"], "regex_priority": "high"}, violation("regex_priority", "expected an integer")),
        ({"paths": ["/a"], "unknown": 1}, violation("unknown", "unknown field")),
    ]
    for data, expected in cases:
        assert await gateway.admin("POST", "/services/s/routes", data, encoding) == (400, expected), data
    fk = {"code": 4, "name": "foreign key violation",
          "message": "the foreign key '{name=\"nope\"}' does not reference an existing 'services' entity.",
          "fields": {"service": {"name": "nope"}}}
    assert await gateway.admin("POST", "/routes", {"paths": ["/a"], "service": {"name": "nope"}}, encoding) == (400, fk)
    status, route = await gateway.admin("POST", "/routes", {"paths": ["/a"], "service": {"name": "s"}}, encoding)
    assert status == 201 and route["service"]["id"] == (await gateway.admin("GET", "/services/s"))[1]["id"]
    assert await gateway.admin("PATCH", f"/routes/{route['id']}", {"paths": None, "methods": None}, encoding) == (
        400, entity_error)


async def test_deleting_a_service_in_use_is_a_foreign_key_violation(gateway, encoding):
    svc = await create(gateway, "/services", {"name": "s", "host": "example.com"}, encoding)
    route = await create(gateway, "/services/s/routes", {"paths": ["/a"]}, encoding)
    expected = {"code": 4, "name": "foreign key violation",
                "message": "an existing 'routes' entity references this 'services' entity",
                "fields": {"@referenced_by": "routes"}}
    assert await gateway.admin("DELETE", "/services/s") == (400, expected)
    assert await gateway.admin("DELETE", f"/services/{svc['id']}") == (400, expected)
    assert (await gateway.admin("GET", "/services/s"))[0] == 200
    assert await gateway.admin("DELETE", f"/routes/{route['id']}") == (204, None)
    assert await gateway.admin("DELETE", "/services/s") == (204, None)
    assert gateway.worker.store.get("services", svc["id"]) is None


async def test_client_chosen_ids(gateway, encoding):
    ident = "3f1c2a8e-9d4b-4c7e-8a21-5b6d7e8f9a0b"
    svc = await create(gateway, "/services", {"id": ident, "name": "s", "host": "example.com"}, encoding)
    assert svc["id"] == ident
    assert await gateway.admin("POST", "/services", {"id": ident, "name": "t", "host": "example.com"}, encoding) == (
        400, {"code": 3, "name": "primary key violation",
              "message": f"primary key violation on key '{{id=\"{ident}\"}}'", "fields": {"id": ident}})
    assert await gateway.admin("POST", "/services", {"id": "not-a-uuid", "host": "example.com"}, encoding) == (
        400, violation("id", "expected a valid UUID"))
    status, body = await gateway.admin("PATCH", "/services/s", {"id": "0b5c2a8e-9d4b-4c7e-8a21-5b6d7e8f9a0b"}, encoding)
    assert status == 400 and body["code"] == 2 and "id" in body["fields"], body
