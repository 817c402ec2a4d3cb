"""Helpers for the Admin API tests: Kong's error bodies and list walking."""
from __future__ import annotations

from typing import Any

NOT_FOUND = {"message": "Not found"}


def schema_violation(fields: dict[str, Any], message: str) -> dict[str, Any]:
    """Kong's 400 body for a schema violation."""
    return {"code": 2, "name": "schema violation", "message": message, "fields": fields}


def violation(field: str, text: str) -> dict[str, Any]:
    """Kong's 400 body for one violated top-level field."""
    return schema_violation({field: text}, f"schema violation ({field}: {text})")


async def create(gateway: Any, path: str, data: dict[str, Any], encoding: str = "json") -> dict[str, Any]:
    """POST that must create (201); the new entity."""
    status, body = await gateway.admin("POST", path, data, encoding)
    assert status == 201, body
    return body


async def all_pages(gateway: Any, path: str) -> list[dict[str, Any]]:
    """Every item of a list, following ``next`` links."""
    items: list[dict[str, Any]] = []
    url: str | None = path
    while url:
        status, body = await gateway.admin("GET", url)
        assert status == 200, body
        items.extend(body["data"])
        url = body["next"]
    return items
