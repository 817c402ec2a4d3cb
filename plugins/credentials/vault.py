"""Resolving Kong-style vault references at use: ``{vault://env/NAME}``.

The grammar lives in :mod:`kong_py.schemas.references` (the Admin API checks
references on write and shows them unmasked). Here they are replaced by their
values, read from the gateway process's environment each time a request uses
them, so a secret rotated in the environment of a restarted worker is picked
up without touching the configuration.
"""
from __future__ import annotations

import json
import os
from typing import Mapping

from kong_py.schemas.references import Reference, find_references, has_reference

from .errors import CredentialError


class Template:
    """A value with references, split once: literal parts and references in order."""

    __slots__ = ("parts",)

    def __init__(self, value: str) -> None:
        parts: list[str | Reference] = []
        last = 0
        for start, end, ref in find_references(value):
            if start > last:
                parts.append(value[last:start])
            parts.append(ref)
            last = end
        if last < len(value):
            parts.append(value[last:])
        self.parts = tuple(parts)

    def resolve(self, field: str, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        return "".join(part if isinstance(part, str) else lookup(part, field, env) for part in self.parts)


def prepare(value: str) -> str | Template:
    """The value itself when it has no reference (nothing to do per request)."""
    return Template(value) if has_reference(value) else value


def lookup(ref: Reference, field: str, environ: Mapping[str, str]) -> str:
    raw = environ.get(ref.variable)
    if raw is None:
        raise missing(ref, field, f"environment variable {ref.variable} is not set")
    if ref.key is None:
        return raw
    try:
        data = json.loads(raw)
    except ValueError:
        raise missing(ref, field, f"environment variable {ref.variable} does not hold a JSON object") from None
    value = data.get(ref.key) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise missing(ref, field, f"the JSON object in {ref.variable} has no text field '{ref.key}'")
    return str(value)


def missing(ref: Reference, field: str, why: str) -> CredentialError:
    return CredentialError(
        500, f"could not resolve the vault reference {ref.label} of credentials.{field}",
        log_key=f"vault:{ref.text}",
        log_message=f"could not resolve the vault reference {ref.label} of credentials.{field}: {why}")
