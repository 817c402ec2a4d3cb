"""Shared pieces of the entity schemas: Kong's validation messages and error shape.

Entities are pydantic models in lax mode, so the strings of a form body are
converted to numbers and booleans by the schema, as Kong's Admin API does.
Errors are translated into Kong's ``fields`` structure and messages.
"""
from __future__ import annotations

import re
import time
import uuid
from typing import Annotated, Any, Iterable

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator
from pydantic.functional_validators import AfterValidator


class SchemaError(Exception):
    """A Kong schema violation: ``fields`` maps (nested) field names to messages."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        flat = list(_flatten(fields))
        details = "; ".join(f"{path}: {msg}" if path != "@entity" else msg for path, msg in flat)
        count = len(flat)
        head = "schema violation" if count == 1 else f"{count} schema violations"
        super().__init__(f"{head} ({details})")

    @property
    def message(self) -> str:
        return str(self)


def _flatten(fields: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    """Leaf messages in Kong's order: entity checks first, then fields by name."""
    if isinstance(fields, dict):
        for key, value in sorted(fields.items(), key=lambda kv: (kv[0] != "@entity", str(kv[0]))):
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(fields, list):
        for index, value in enumerate(fields):
            if value is None:
                continue
            if prefix == "@entity" or prefix.endswith(".@entity"):
                yield prefix, value
            else:
                yield from _flatten(value, f"{prefix}.{index + 1}")
    else:
        yield prefix, str(fields)


_MESSAGES = {
    "missing": "required field missing",
    "extra_forbidden": "unknown field",
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected a boolean",
    "bool_type": "expected a boolean",
    "string_type": "expected a string",
    "list_type": "expected an array",
    "tuple_type": "expected an array",
    "set_type": "expected a set",
    "dict_type": "expected a map",
    "model_type": "expected a record",
    "model_attributes_type": "expected a record",
    "string_too_short": "length must be at least 1",
    "none_required": "value must be null",
}


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        names = re.findall(r"'([^']*)'", expected)
        return "expected one of: " + ", ".join(names)
    if kind == "enum":
        expected = error.get("ctx", {}).get("expected", "")
        return "expected one of: " + ", ".join(re.findall(r"'([^']*)'", expected))
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    if kind == "assertion_error":
        return error["msg"].removeprefix("Assertion failed, ")
    return error["msg"]


def set_path(fields: dict[str, Any], path: tuple[Any, ...], message: str) -> None:
    """Place ``message`` at ``path`` in a Kong-shaped nested fields structure."""
    node: Any = fields
    parts = [p for p in path if p not in ("function-after", "function-before", "function-wrap")]
    if not parts:
        parts = ["@entity"]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, int):
            continue  # array element errors are reported on the array itself
        if last or (i + 1 < len(parts) and all(isinstance(p, int) for p in parts[i + 1:])):
            if part == "@entity":
                node.setdefault("@entity", []).append(message)
            elif isinstance(node.get(part), str):
                pass  # keep the first message for a field
            else:
                node[part] = message
            return
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt


def schema_error(exc: ValidationError) -> SchemaError:
    """Translate a pydantic ValidationError into Kong's schema violation."""
    fields: dict[str, Any] = {}
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
        set_path(fields, loc, _message(error))
    return SchemaError(fields)


# --- reusable field types -------------------------------------------------

def as_list(value: Any) -> Any:
    """A single form value for an array field becomes a one-element array."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and all(str(k).isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    return value


def between(low: int, high: int):
    def check(value: int | float | None) -> int | float | None:
        if value is not None and not (low <= value <= high):
            raise ValueError(f"value should be between {low} and {high}")
        return value
    return AfterValidator(check)


def _check_tags(tags: list[str] | None) -> list[str] | None:
    if tags is None:
        return None
    for tag in tags:
        if not tag or "," in tag or "/" in tag or not tag.isprintable():
            raise ValueError("invalid tag '%s': expected printable ascii (except `,` and `/`) or valid utf-8 sequences" % tag)
    return tags


StrList = Annotated[list[str], BeforeValidator(as_list)]
Tags = Annotated[list[str] | None, BeforeValidator(as_list), AfterValidator(_check_tags)]

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def is_hostname(name: str) -> bool:
    """A DNS name (labels of letters, digits, '-' and '_')."""
    if not name or len(name) > 253:
        return False
    return all(_HOST_LABEL.match(label) for label in name.rstrip(".").split("."))


def new_id() -> str:
    return str(uuid.uuid4())


def now(precise: bool = False) -> int | float:
    """Kong's timestamps: seconds, or milliseconds as a fraction for targets (their
    creation order decides the balancing order within a second)."""
    return round(time.time(), 3) if precise else int(time.time())


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


class Schema(BaseModel):
    """Base of every entity and nested record: unknown fields are errors, as in Kong."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _nulls_mean_default(cls, data: Any) -> Any:
        """An explicit null on a field that cannot be null falls back to its default."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, field in cls.model_fields.items():
            if out.get(name, 0) is None and not _allows_none(field.annotation) and not field.is_required():
                del out[name]
        return out


def _allows_none(annotation: Any) -> bool:
    import types
    import typing
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _allows_none(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return type(None) in typing.get_args(annotation)
    return annotation is type(None) or annotation is Any
