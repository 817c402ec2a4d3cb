"""request-termination through the Admin API: validation, errors, listing, schema, PATCH."""
from __future__ import annotations

import pytest

ENCODINGS = ["form", "json"]


async def post(gateway, config, encoding, path="/plugins"):
    return await gateway.admin("POST", path, {"name": "request-termination", "config": config}, encoding=encoding)


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_created_entity_has_all_defaults(gateway, encoding):
    status, body = await post(gateway, {"status_code": 403}, encoding)
    assert status == 201
    assert body["name"] == "request-termination"
    assert body["enabled"] is True
    assert body["config"] == {"status_code": 403, "message": None, "body": None, "content_type": None,
                              "echo": False, "trigger": None}
    assert (body["service"], body["route"]) == (None, None)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("config", "fields"), [
    ({"status_code": 600}, {"status_code": "value should be between 100 and 599"}),
    ({"status_code": 99}, {"status_code": "value should be between 100 and 599"}),
    ({"status_code": "abc"}, {"status_code": "expected an integer"}),
    ({"echo": "maybe"}, {"echo": "expected a boolean"}),
    ({"trigger": "bad header"},
     {"trigger": "bad header name 'bad header', allowed characters are A-Z, a-z, 0-9, '_', and '-'"}),
    ({"unknown": "x"}, {"unknown": "unknown field"}),
    ({"message": "m", "body": "b"}, {"@entity": ["message cannot be used with content_type or body"]}),
    ({"message": "m", "content_type": "text/plain"},
     {"@entity": ["message cannot be used with content_type or body"]}),
    ({"content_type": "text/plain"}, {"@entity": ["content_type requires a body"]}),
    ({"echo": True, "body": "b"}, {"@entity": ["echo cannot be used with content_type and body"]}),
])
async def test_bad_config_is_a_schema_violation_under_config(gateway, encoding, config, fields):
    status, body = await post(gateway, config, encoding)
    assert status == 400
    assert body["code"] == 2
    assert body["name"] == "schema violation"
    assert body["fields"] == {"config": fields}
    assert body["message"].startswith("schema violation (config")
    _, listing = await gateway.admin("GET", "/plugins")
    assert listing["data"] == []


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_unknown_plugin_name_is_rejected(gateway, encoding):
    status, body = await gateway.admin("POST", "/plugins", {"name": "no-such-plugin"}, encoding=encoding)
    assert status == 400
    assert body["name"] == "schema violation"
    assert body["fields"] == {"name": "plugin 'no-such-plugin' not enabled; add it to the 'plugins' "
                                      "configuration property"}


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_duplicate_in_the_same_scope_is_a_conflict(gateway, encoding):
    assert (await gateway.admin("POST", "/services", {"name": "s", "host": "example.com"}))[0] == 201
    assert (await post(gateway, {}, encoding))[0] == 201
    status, body = await post(gateway, {"status_code": 403}, encoding)
    assert status == 409
    assert body["name"] == "unique constraint violation"
    # the same plugin in another scope is fine, and again a conflict there
    assert (await post(gateway, {}, encoding, "/services/s/plugins"))[0] == 201
    assert (await post(gateway, {}, encoding, "/services/s/plugins"))[0] == 409


async def test_enabled_plugins_lists_it(gateway):
    status, body = await gateway.admin("GET", "/plugins/enabled")
    assert status == 200
    assert "request-termination" in body["enabled_plugins"]
    _, root = await gateway.admin("GET", "/")
    assert root["plugins"]["available_on_server"]["request-termination"]["priority"] == 2


@pytest.mark.parametrize("path", ["/schemas/plugins/request-termination", "/plugins/schema/request-termination"])
async def test_schema_is_served(gateway, path):
    status, body = await gateway.admin("GET", path)
    assert status == 200
    config = body["fields"][0]["config"]
    props = config["properties"]
    assert set(props) == {"status_code", "message", "body", "content_type", "echo", "trigger"}
    assert props["status_code"]["default"] == 503
    assert (props["status_code"]["minimum"], props["status_code"]["maximum"]) == (100, 599)
    assert props["echo"]["default"] is False
    for name, prop in props.items():
        assert prop.get("description"), f"{name} has no description"
        assert "default" in prop, f"{name} has no default"
    assert body["priority"] == 2


async def test_schema_of_unknown_plugin_is_404(gateway):
    status, _ = await gateway.admin("GET", "/schemas/plugins/no-such-plugin")
    assert status == 404


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_patch_merges_config(gateway, encoding):
    _, created = await post(gateway, {"status_code": 403, "message": "closed", "trigger": "x-stop"}, encoding)
    status, body = await gateway.admin("PATCH", f"/plugins/{created['id']}", {"config": {"status_code": 451}},
                                       encoding=encoding)
    assert status == 200
    assert body["config"]["status_code"] == 451
    assert body["config"]["message"] == "closed"
    assert body["config"]["trigger"] == "x-stop"
    # a PATCH that breaks a cross-field rule is refused, and nothing changes
    status, body = await gateway.admin("PATCH", f"/plugins/{created['id']}", {"config": {"body": "raw"}},
                                       encoding=encoding)
    assert status == 400
    assert body["fields"] == {"config": {"@entity": ["message cannot be used with content_type or body"]}}
    _, current = await gateway.admin("GET", f"/plugins/{created['id']}")
    assert current["config"]["body"] is None
    assert current["config"]["status_code"] == 451


async def test_patch_with_null_clears_a_field(gateway):
    _, created = await post(gateway, {"status_code": 403, "message": "closed"}, "json")
    status, body = await gateway.admin("PATCH", f"/plugins/{created['id']}",
                                       {"config": {"message": None, "body": "raw"}}, encoding="form")
    assert status == 200, body
    assert (body["config"]["message"], body["config"]["body"]) == (None, "raw")
    # a null status_code goes back to its default
    status, body = await gateway.admin("PATCH", f"/plugins/{created['id']}", {"config": {"status_code": None}})
    assert status == 200 and body["config"]["status_code"] == 503


async def test_put_replaces_config(gateway):
    _, created = await post(gateway, {"status_code": 403, "message": "closed"}, "json")
    status, body = await gateway.admin("PUT", f"/plugins/{created['id']}",
                                       {"name": "request-termination", "config": {"status_code": 410}})
    assert status == 200
    assert body["config"]["status_code"] == 410
    assert body["config"]["message"] is None
