"""Kong's Admin API error bodies and the exceptions that produce them."""
from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from ..schemas.base import SchemaError


class ApiError(Exception):
    """An error answered with ``status`` and Kong's JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.status = status
        self.body = body


def not_found() -> ApiError:
    return ApiError(404, {"message": "Not found"})


def schema_violation(fields: dict[str, Any]) -> ApiError:
    error = SchemaError(fields)
    return ApiError(400, {"code": 2, "name": "schema violation", "message": error.message, "fields": fields})


def from_schema_error(error: SchemaError) -> ApiError:
    return ApiError(400, {"code": 2, "name": "schema violation", "message": error.message, "fields": error.fields})


def _lua(value: Any) -> str:
    """Kong prints keys in Lua table syntax: {name="x"}."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_lua(v)}" for k, v in sorted(value.items())) + "}"
    if value is None:
        return "null"
    return f'"{value}"' if isinstance(value, str) else str(value)


def unique_violation(fields: dict[str, Any]) -> ApiError:
    return ApiError(409, {"code": 5, "name": "unique constraint violation",
                          "message": f"UNIQUE violation detected on '{_lua(fields)}'", "fields": fields})


def primary_key_violation(ident: str) -> ApiError:
    """Kong answers an insert with a taken id with 400 (code 3), not a 409."""
    return ApiError(400, {"code": 3, "name": "primary key violation",
                          "message": f"primary key violation on key '{_lua({'id': ident})}'", "fields": {"id": ident}})


def foreign_key_violation(field: str, key: dict[str, Any], table: str) -> ApiError:
    return ApiError(400, {"code": 4, "name": "foreign key violation",
                          "message": f"the foreign key '{_lua(key)}' does not reference an existing '{table}' entity.",
                          "fields": {field: key}})


def referenced_by(table: str, own: str) -> ApiError:
    return ApiError(400, {"code": 4, "name": "foreign key violation",
                          "message": f"an existing '{table}' entity references this '{own}' entity",
                          "fields": {"@referenced_by": table}})


def json_response(status: int, body: Any) -> Response:
    if status == 204:
        return Response(status_code=204)
    return Response(orjson.dumps(body), status_code=status, media_type="application/json; charset=utf-8")
