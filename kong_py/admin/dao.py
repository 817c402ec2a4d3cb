"""Entity operations behind the Admin API: validation and defaults, references,
uniqueness, PUT/PATCH semantics and secret masking, over the store.

Synchronous on purpose: endpoints run these in a thread so a slow database
never stalls the proxy sharing the event loop.
"""
from __future__ import annotations

import base64
import copy
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..db.store import Store, UniqueViolation
from ..plugin_manager import PluginManager
from ..proxy.address_policy import AddressPolicy
from .addresses import address_errors
from ..schemas import Plugin, Route, SchemaError, Service, Target, Upstream, schema_error
from ..schemas.base import Schema, is_uuid, new_id, now
from ..schemas.healthchecks import apply_short_form
from ..schemas.references import shows_no_secret
from ..schemas.target import SECRET_FIELDS, join_target, split_target
from .errors import (ApiError, foreign_key_violation, from_schema_error, not_found, primary_key_violation,
                     referenced_by, schema_violation, unique_violation)

META = ("id", "created_at", "updated_at")
#: dict-valued fields that PATCH replaces instead of merging (maps, not records)
MAP_FIELDS = frozenset({"headers", "tags"})


@dataclass(frozen=True)
class Parent:
    """The entity a nested endpoint hangs under, and the field that refers to it."""

    field: str
    entity: dict[str, Any]

    @property
    def id(self) -> str:
        return self.entity["id"]


@dataclass(frozen=True)
class Kind:
    table: str
    schema: type[Schema]
    #: the unique field usable instead of the id in URLs
    key: str | None


KINDS = {
    "services": Kind("services", Service, "name"),
    "routes": Kind("routes", Route, "name"),
    "upstreams": Kind("upstreams", Upstream, "name"),
    "targets": Kind("targets", Target, "target"),
    "plugins": Kind("plugins", Plugin, "instance_name"),
}


class Dao:
    def __init__(self, store: Store, plugins: PluginManager, address_policy: AddressPolicy | None = None) -> None:
        self.store = store
        self.plugins = plugins
        #: addresses services, targets and forward proxies may not point at
        self.address_policy = address_policy

    # -- lookups ----------------------------------------------------------
    def find(self, table: str, ident: str, parent: Parent | None = None) -> dict[str, Any] | None:
        """An entity by id or endpoint key (targets: within ``parent`` upstream)."""
        if table == "targets":
            assert parent is not None
            if is_uuid(ident):
                entity = self.store.get("targets", ident)
                return entity if entity and entity["upstream"]["id"] == parent.id else None
            try:
                host, port = split_target(ident)
            except ValueError:
                return None
            return self.store.find("targets", upstream_id=parent.id, target=join_target(host, port or 8000))
        entity = self.store.get(table, ident) if is_uuid(ident) else None
        key = KINDS[table].key
        if entity is None and key:
            entity = self.store.find(table, **{key: ident})
        return entity

    def get(self, table: str, ident: str, parent: Parent | None = None) -> dict[str, Any]:
        """An entity or 404; under a ``parent`` one that belongs elsewhere is not found either (Kong)."""
        entity = self.find(table, ident, parent)
        if entity is None or (parent is not None and (entity.get(parent.field) or {}).get("id") != parent.id):
            raise not_found()
        return entity

    def page(self, table: str, query: dict[str, str], **columns: Any) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a list: Kong's ``size``, ``offset`` and ``tags`` filters and errors."""
        size = _page_size(query.get("size"))
        start = _page_offset(query.get("offset"))
        tags = _tags_filter(query["tags"]) if query.get("tags") else None
        rows = self.store.list(table, **columns)
        if tags:
            rows = [r for r in rows if _tags_match(r.get("tags") or [], tags)]
        data = rows[start:start + size]
        following = start + size if start + size < len(rows) else None
        token = base64.urlsafe_b64encode(str(following).encode()).decode().rstrip("=") if following else None
        return data, token

    # -- writes ---------------------------------------------------------
    def create(self, table: str, payload: dict[str, Any], parent: Parent | None = None) -> tuple[int, dict[str, Any]]:
        """POST: 201 with the new entity (a target that exists is updated: 200)."""
        payload = dict(payload)
        embedded = payload.pop("targets", None) if table == "upstreams" else None
        if table == "targets":
            assert parent is not None
            probe = self._validate("targets", self._with_parent(_strip_meta(payload), parent))
            existing = self.store.find("targets", upstream_id=parent.id, target=probe["target"])
            if existing is not None:
                return 200, self._update("targets", existing, payload, replace=False, parent=parent)
        entity_id = self._new_id(payload)
        entity = self._validate(table, self._with_parent(_strip_meta(payload), parent))
        stamp = now(precise=table == "targets")
        entity = {"id": entity_id, **entity, "created_at": stamp, "updated_at": stamp}
        inserts = [(table, entity)]
        if embedded is not None:
            inserts += [("targets", t) for t in self._embedded_targets(embedded, entity)]
        self._check_unique(table, entity, creating=True)
        self._write(inserts=inserts)
        return 201, entity

    def upsert(self, table: str, ident: str, payload: dict[str, Any], parent: Parent | None = None) -> tuple[int, dict[str, Any]]:
        """PUT: replace the entity named by ``ident``, or create it.

        As in Kong, a name (or a target's host:port) in the URL is the entity's,
        so a replacement body need not repeat it; fields not given get defaults.
        """
        payload = dict(payload)
        if not is_uuid(ident) and KINDS[table].key:
            _url_key(table, ident, payload)
        existing = self.find(table, ident, parent)
        if existing is not None:
            if table == "targets" and not any(payload.get(f) is not None for f in ("target", "host", "provider")):
                payload["target"] = existing["target"]  # by id: the URL still names the target
            return 200, self._update(table, existing, payload, replace=True, parent=parent)
        if is_uuid(ident):
            payload["id"] = ident
        return self.create(table, payload, parent)

    def patch(self, table: str, ident: str, payload: dict[str, Any], parent: Parent | None = None) -> dict[str, Any]:
        existing = self.get(table, ident, parent)
        return self._update(table, existing, payload, replace=False, parent=parent)

    def delete(self, table: str, ident: str, parent: Parent | None = None) -> None:
        """As in Kong: idempotent at the top level (204 whether or not it existed);
        nested, a missing entity or one of another parent is 404."""
        entity = self.get(table, ident, parent) if parent is not None else self.find(table, ident)
        if entity is None:
            return
        if table == "services" and self.store.count("routes", service_id=entity["id"]):
            raise referenced_by("routes", "services")
        self._write(deletes=[(table, entity["id"])])

    # -- internals ------------------------------------------------------
    def _update(self, table: str, existing: dict[str, Any], payload: dict[str, Any], replace: bool,
                parent: Parent | None) -> dict[str, Any]:
        payload = dict(payload)
        if "targets" in payload and table == "upstreams":
            raise schema_violation({"targets": "targets are added with /upstreams/{upstream}/targets after creation"})
        if payload.get("id") not in (None, existing["id"]):
            raise schema_violation({"id": "cannot change the id of an entity"})
        if table == "targets":
            _keep_masked_secrets(payload, existing)
        if replace:
            merged = _strip_meta(payload)
            if table == "targets":
                merged["upstream"] = existing["upstream"]
        else:
            merged = _merge(_strip_meta(existing), _strip_meta(payload))
            if table == "targets":
                _drop_stale_address(merged, payload)
            if table == "upstreams" and "health_checks" not in payload:
                merged.pop("health_checks", None)
                short = existing.get("health_checks")
            else:
                short = None
        entity = self._validate(table, self._with_parent(merged, parent))
        if not replace and table == "upstreams" and short is not None:
            entity["health_checks"] = short  # kept for read-back; healthchecks already holds its effect
        entity = {"id": existing["id"], **entity, "created_at": existing["created_at"],
                  "updated_at": now(precise=table == "targets")}
        self._check_unique(table, entity, creating=False)
        self._write(updates=[(table, entity)])
        return entity

    def _validate(self, table: str, data: dict[str, Any]) -> dict[str, Any]:
        """Schema, cross-field rules and references; the entity as stored (without meta)."""
        kind = KINDS[table]
        if table == "plugins":
            return self._validate_plugin(data)
        try:
            model = kind.schema.model_validate(data)
        except ValidationError as exc:
            raise from_schema_error(schema_error(exc)) from None
        errors: dict[str, Any] = {}
        if isinstance(model, Target):
            errors = model.normalize()
        elif isinstance(model, Route):
            errors = model.entity_errors()
        elif isinstance(model, Upstream):
            model.algorithm = self.plugins.algorithm_aliases.get(model.algorithm, model.algorithm)
            errors = model.entity_errors(list(self.plugins.algorithms))
        if not errors and self.address_policy is not None:
            errors = address_errors(self.address_policy, model, data,
                                    lambda name: self.store.find("upstreams", name=name) is not None)
        if errors:
            raise schema_violation(errors)
        entity = model.model_dump(mode="json")
        if isinstance(model, Target):
            # only the fields given: the rest comes from the upstream, also when it changes later
            entity["healthchecks"] = (model.healthchecks.model_dump(mode="json", exclude_unset=True)
                                      if model.healthchecks is not None else None)
            entity["health_checks"] = (model.health_checks.model_dump(mode="json", exclude_none=True)
                                       if model.health_checks is not None else None)
        if isinstance(model, Upstream) and model.health_checks is not None:
            apply_short_form(entity["healthchecks"], model.health_checks)
            entity["health_checks"] = model.health_checks.model_dump(mode="json", exclude_none=True)
        if table == "routes" and entity.get("service") is not None:
            entity["service"] = self._reference("service", "services", entity["service"])
        return entity

    def _validate_plugin(self, data: dict[str, Any]) -> dict[str, Any]:
        try:
            model = Plugin.model_validate(data)
        except ValidationError as exc:
            raise from_schema_error(schema_error(exc)) from None
        if model.name not in self.plugins.handlers:
            raise schema_violation({"name": f"plugin '{model.name}' not enabled; add it to the 'plugins' configuration property"})
        try:
            config = self.plugins.validate_config(model.name, model.config)
        except SchemaError as exc:
            raise from_schema_error(exc) from None
        entity = model.model_dump(mode="json")
        entity["config"] = config
        for field, table in (("service", "services"), ("route", "routes")):
            if entity.get(field) is not None:
                entity[field] = self._reference(field, table, entity[field])
        if entity.get("consumer") is not None:
            raise schema_violation({"consumer": "consumers are not supported"})
        return entity

    def _reference(self, field: str, table: str, ref: Any) -> dict[str, str]:
        """Resolve ``{"id": ...}`` or ``{"name": ...}`` to ``{"id": ...}`` of an existing entity."""
        if not isinstance(ref, dict) or not (ref.get("id") or ref.get("name")) or set(ref) - {"id", "name"}:
            raise schema_violation({field: {"id": "required field missing"}})
        ident = ref.get("id") or ref.get("name")
        entity = self.store.get(table, ident) if ref.get("id") and is_uuid(ref["id"]) else None
        if entity is None and ref.get("name"):
            entity = self.store.find(table, name=ref["name"])
        if entity is None:
            if ref.get("id") and not is_uuid(ref["id"]):
                raise schema_violation({field: {"id": "expected a valid UUID"}})
            raise foreign_key_violation(field, {k: v for k, v in ref.items()}, table)
        return {"id": entity["id"]}

    @staticmethod
    def _with_parent(data: dict[str, Any], parent: Parent | None) -> dict[str, Any]:
        return data if parent is None else {**data, parent.field: {"id": parent.id}}

    def _embedded_targets(self, targets: Any, upstream: dict[str, Any]) -> list[dict[str, Any]]:
        if isinstance(targets, dict):  # form: targets[1].host=... decodes to a list already
            targets = list(targets.values())
        if not isinstance(targets, list):
            raise schema_violation({"targets": "expected an array"})
        out: list[dict[str, Any]] = []
        errors: list[Any] = []
        seen: set[str] = set()
        stamp = now(precise=True)
        for item in targets:
            if not isinstance(item, dict):
                errors.append("expected a record")
                continue
            try:
                entity = self._validate("targets", {**_strip_meta(item), "upstream": {"id": upstream["id"]}})
            except ApiError as exc:
                errors.append(exc.body.get("fields"))
                continue
            if entity["target"] in seen:
                errors.append({"target": f"duplicate target '{entity['target']}'"})
                continue
            seen.add(entity["target"])
            errors.append(None)
            created = round(stamp + len(out) / 1000, 3)  # keeps the order they were given in
            out.append({"id": self._new_id(item), **entity, "created_at": created, "updated_at": created})
        if any(e is not None for e in errors):
            raise schema_violation({"targets": errors})
        return out

    def _new_id(self, payload: dict[str, Any]) -> str:
        given = payload.get("id")
        if given is None:
            return new_id()
        if not isinstance(given, str) or not is_uuid(given):
            raise schema_violation({"id": "expected a valid UUID"})
        return given

    def _check_unique(self, table: str, entity: dict[str, Any], creating: bool) -> None:
        """Friendly 409s (the database constraints stay the last word)."""
        if creating and self.store.get(table, entity["id"]) is not None:
            raise primary_key_violation(entity["id"])
        key = KINDS[table].key
        if table == "targets":
            other = self.store.find("targets", upstream_id=entity["upstream"]["id"], target=entity["target"])
            if other is not None and other["id"] != entity["id"]:
                raise unique_violation({"target": entity["target"], "upstream": entity["upstream"]})
        elif table == "plugins":
            for other in self.store.list("plugins", name=entity["name"]):
                if other["id"] != entity["id"] and all(
                        (other.get(f) or None) == (entity.get(f) or None) for f in ("service", "route", "consumer")):
                    raise unique_violation({"name": entity["name"], "service": entity.get("service"),
                                            "route": entity.get("route"), "consumer": entity.get("consumer")})
        if key and entity.get(key) is not None and table != "targets":
            other = self.store.find(table, **{key: entity[key]})
            if other is not None and other["id"] != entity["id"]:
                raise unique_violation({key: entity[key]})

    def _write(self, **changes: Any) -> None:
        try:
            self.store.write(**changes)
        except UniqueViolation:
            raise ApiError(409, {"code": 5, "name": "unique constraint violation",
                                 "message": "UNIQUE violation detected"}) from None

    # -- presentation -----------------------------------------------------
    def present(self, table: str, entity: dict[str, Any], full: bool = False) -> dict[str, Any]:
        """What GET returns: secrets masked; an upstream's targets when ``full``."""
        if table == "targets":
            return mask_target(entity)
        if table == "upstreams" and full:
            out = dict(entity)
            out["targets"] = [mask_target(t) for t in self.store.list("targets", upstream_id=entity["id"])]
            return out
        return entity


def mask_secret(value: str) -> str:
    """Enough to recognise a key, never enough to use it."""
    return "****" + value[-4:] if len(value) >= 16 else "****"


def mask_target(entity: dict[str, Any]) -> dict[str, Any]:
    """Secret values masked; a value that is only vault references (``{vault://env/KEY}``,
    ``Bearer {vault://env/KEY}``) is shown as written, since it holds no secret."""
    creds = entity.get("credentials")
    if not creds:
        return entity
    out = dict(entity)
    out["credentials"] = {k: (mask_secret(v) if k in SECRET_FIELDS and isinstance(v, str)
                              and not shows_no_secret(v) else v)
                          for k, v in creds.items()}
    return out


def _keep_masked_secrets(payload: dict[str, Any], existing: dict[str, Any]) -> None:
    """A client that sends back a masked value it read keeps the stored secret."""
    new, old = payload.get("credentials"), existing.get("credentials") or {}
    if not isinstance(new, dict):
        return
    for field in SECRET_FIELDS:
        value = new.get(field)
        if isinstance(value, str) and isinstance(old.get(field), str) and value == mask_secret(old[field]):
            new[field] = old[field]


def _drop_stale_address(merged: dict[str, Any], payload: dict[str, Any]) -> None:
    """A new ``target`` replaces host/port, and new host/port replace ``target``."""
    if "target" in payload:
        for field in ("host", "port"):
            if field not in payload:
                merged.pop(field, None)
    elif "host" in payload or "port" in payload:
        merged.pop("target", None)


def _url_key(table: str, ident: str, payload: dict[str, Any]) -> None:
    """Put the endpoint key from a PUT URL into the body (in place); a different one is an error."""
    key = KINDS[table].key
    assert key is not None
    given = payload.get(key)
    if table == "targets":
        if given is None and payload.get("host") is None:
            payload[key] = ident
        if given is None or not isinstance(given, str):
            return
        same = _same_target(given, ident)
    else:
        same = given is None or given == ident
        payload[key] = given if given is not None else ident
    if not same:
        raise schema_violation({key: f"value '{given}' does not match the one in the URL '{ident}'"})


def _same_target(a: str, b: str) -> bool:
    """Whether two host[:port] strings name the same target (port 8000 when omitted)."""
    try:
        (host_a, port_a), (host_b, port_b) = split_target(a), split_target(b)
    except ValueError:
        return a == b
    return join_target(host_a, port_a or 8000) == join_target(host_b, port_b or 8000)


def _strip_meta(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in META}


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """PATCH: records merge field by field; maps, arrays and scalars are replaced."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in MAP_FIELDS:
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _page_size(text: str | None) -> int:
    """Kong's ``size``: 100 by default, 1 to 1000 (code 9, "invalid size")."""
    if text is None:
        return 100
    try:
        size = float(text)
    except ValueError:
        raise _invalid_size("size must be a number") from None
    if not size.is_integer() or not 1 <= size <= 1000:
        raise _invalid_size("size must be an integer between 1 and 1000")
    return int(size)


def _invalid_size(message: str) -> ApiError:
    return ApiError(400, {"code": 9, "name": "invalid size", "message": message})


def _page_offset(token: str | None) -> int:
    """Decode an ``offset`` this API handed out in ``next`` (code 7 otherwise)."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode() + b"==").decode()
        if not text.isdigit():
            raise ValueError
        return int(text)
    except (ValueError, UnicodeError):
        raise ApiError(400, {"code": 7, "name": "invalid offset",
                             "message": f"'{token}' is not a valid offset: bad base64 encoding"}) from None


def _tags_filter(query: str) -> tuple[str, list[str]]:
    """Kong's ``tags`` filter: ``a,b`` needs all, ``a/b`` any; at most 5; not both."""
    mode = "or" if "/" in query else "and"
    tags = query.split("/" if mode == "or" else ",")
    problem = None
    if ("," in query and "/" in query) or not all(tags):
        problem = "invalid filter syntax"
    elif len(tags) > 5:
        problem = "cannot query more than 5 tags"
    if problem:
        raise ApiError(400, {"code": 11, "name": "invalid options",
                             "message": f"invalid option (tags: {problem})", "options": {"tags": problem}})
    return mode, tags


def _tags_match(tags: list[str], query: tuple[str, list[str]]) -> bool:
    mode, wanted = query
    if mode == "or":
        return any(t in tags for t in wanted)
    return all(t in tags for t in wanted)
