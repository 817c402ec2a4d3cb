"""The Admin API's OpenAPI 3.1 document, built from its route table and entity schemas.

Nothing is written twice: paths, methods and path parameters come from the
Starlette routes the Admin API serves, request bodies from the same pydantic
models that validate writes (``kong_py.schemas``), so the document cannot
drift from the behaviour. It is built once, when the Admin API is created,
and lets schema-driven tools (schemathesis, client generators) exercise the API.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import Route

from .. import __version__

__all__ = ["openapi_document"]

_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")
_REF = "#/components/schemas/{model}"
#: query parameters every list endpoint takes (Kong's paging and tag filters)
_LIST_PARAMS = [
    {"name": "size", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
     "description": "page size (default 100)"},
    {"name": "offset", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "the `offset` of the previous page"},
    {"name": "tags", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "`a,b`: both tags; `a/b`: either"},
]
_ERROR = {
    "type": "object",
    "properties": {"message": {"type": "string"}, "code": {"type": "integer"}, "name": {"type": "string"},
                   "fields": {"type": "object"}},
    "required": ["message"],
}
_ANY_JSON: dict[str, Any] = {"application/json": {"schema": {}}}


def _responses(method: str, created: bool) -> dict[str, Any]:
    ok = "201" if created else "204" if method == "DELETE" else "200"
    out: dict[str, Any] = {ok: {"description": "success"}}
    if ok != "204":
        out[ok]["content"] = _ANY_JSON
    error = {"description": "Kong's error body", "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}}}
    for status in ("400", "401", "403", "404", "405", "409", "413", "415", "421"):
        out[status] = error
    return out


def openapi_document(routes: Iterable[Route], bodies: dict[tuple[str, str], type[BaseModel]],
                     lists: set[str], title: str = "kong_py Admin API") -> dict[str, Any]:
    """The document for ``routes``; ``bodies`` maps (path, method) to the model of its JSON body,
    ``lists`` are the paths whose GET is a paged list."""
    models = sorted(set(bodies.values()), key=lambda m: m.__name__)
    names, defs = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Error"] = _ERROR
    paths: dict[str, Any] = {}
    for route in routes:
        item: dict[str, Any] = {}
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                  for name in _PARAM.findall(route.path)]
        if params:
            item["parameters"] = params
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue  # Starlette adds it to every GET
            operation: dict[str, Any] = {
                "operationId": f"{method.lower()}{_operation_name(route.path)}",
                "responses": _responses(method, method == "POST" and (route.path, method) in bodies),
            }
            model = bodies.get((route.path, method))
            if model is not None:
                operation["requestBody"] = {
                    "required": method != "PATCH",
                    "content": {"application/json": {"schema": names[(model, "validation")]}},
                }
            if method == "GET" and route.path in lists:
                operation["parameters"] = _LIST_PARAMS
            item[method.lower()] = operation
        paths[_PARAM.sub(r"{\1}", route.path)] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__,
                 "description": "Kong-compatible Admin API. Bodies may also be sent as "
                                "application/x-www-form-urlencoded or multipart/form-data with Kong's "
                                "flat keys (a.b=v, x[]=v, m[k]=v)."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "only when admin_token is set"},
                                "kongAdminToken": {"type": "apiKey", "in": "header", "name": "Kong-Admin-Token"}},
        },
    }


def _operation_name(path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", _PARAM.sub(r"by-\1", path)) or ["root"]
    return "".join(w[:1].upper() + w[1:] for w in words)
