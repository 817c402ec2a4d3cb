"""The Upstream entity: a virtual host balanced over its targets."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from .base import Schema, Tags, between, is_hostname
from .healthchecks import Healthchecks, HealthChecksShort

HashOn = Literal["none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture"]

#: accepted spellings of algorithm names; the canonical name is stored
ALGORITHM_ALIASES: dict[str, str] = {
    "round_robin": "round-robin",
    "weighted": "weighted-round-robin",
    "weighted_round_robin": "weighted-round-robin",
    "least_conn": "least-connections",
    "least_connections": "least-connections",
    "least-conn": "least-connections",
    "consistent_hashing": "consistent-hashing",
    "hash": "consistent-hashing",
}

#: hash_on value -> the companion field it requires (Kong's conditional checks)
_HASH_COMPANIONS = {
    "hash_on": {"header": "hash_on_header", "cookie": "hash_on_cookie",
                "query_arg": "hash_on_query_arg", "uri_capture": "hash_on_uri_capture"},
    "hash_fallback": {"header": "hash_fallback_header", "query_arg": "hash_fallback_query_arg",
                      "uri_capture": "hash_fallback_uri_capture"},
}


class Proxy(Schema):
    """The seeds' forward proxy that upstream traffic goes through."""

    host: str
    port: Annotated[int, between(1, 65535)]
    protocol: Literal["http", "https"] = "http"


class Upstream(Schema):
    name: str
    algorithm: str = "round-robin"
    hash_on: HashOn = "none"
    hash_fallback: HashOn = "none"
    hash_on_header: str | None = None
    hash_fallback_header: str | None = None
    hash_on_cookie: str | None = None
    hash_on_cookie_path: str = "/"
    hash_on_query_arg: str | None = None
    hash_fallback_query_arg: str | None = None
    hash_on_uri_capture: str | None = None
    hash_fallback_uri_capture: str | None = None
    slots: Annotated[int, between(10, 65536)] = 10000
    healthchecks: Healthchecks = Field(default_factory=Healthchecks)
    health_checks: HealthChecksShort | None = None
    host_header: str | None = None
    use_srv_name: bool = False
    proxy: Proxy | None = None
    tags: Tags = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        host, _, port = value.partition(":")
        if port:
            raise ValueError(f"Invalid name ('{value}'); no port allowed")
        if not is_hostname(value):
            raise ValueError(f"Invalid name ('{value}'); must be a valid hostname")
        return value

    @field_validator("algorithm")
    @classmethod
    def _algorithm(cls, value: str) -> str:
        return ALGORITHM_ALIASES.get(value, value)

    @field_validator("hash_on_cookie_path")
    @classmethod
    def _cookie_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("should start with: /")
        return value

    def entity_errors(self, algorithms: set[str]) -> dict[str, Any]:
        """Kong's cross-field rules, with Kong's messages, keyed by field."""
        errors: dict[str, Any] = {}
        if self.algorithm not in algorithms:
            errors["algorithm"] = "expected one of: " + ", ".join(sorted(algorithms))
        for field, companions in _HASH_COMPANIONS.items():
            companion = companions.get(getattr(self, field))
            if companion and not getattr(self, companion):
                errors[companion] = "required field missing"
        if self.hash_on == "none" and self.hash_fallback != "none":
            errors["hash_fallback"] = "expected one of: none"
        if self.hash_on == "cookie" and self.hash_fallback != "none":
            errors["hash_fallback"] = "expected one of: none"
        if self.hash_on != "none" and self.hash_on == self.hash_fallback and self.hash_on not in ("header", "query_arg", "uri_capture"):
            errors.setdefault("@entity", []).append("values of these fields must be distinct: 'hash_on', 'hash_fallback'")
        pairs = (("hash_on_header", "hash_fallback_header"), ("hash_on_query_arg", "hash_fallback_query_arg"),
                 ("hash_on_uri_capture", "hash_fallback_uri_capture"))
        for first, second in pairs:
            a, b = getattr(self, first), getattr(self, second)
            if a and b and a.lower() == b.lower() and self.hash_on == self.hash_fallback:
                errors.setdefault("@entity", []).append(f"values of these fields must be distinct: '{first}', '{second}'")
        return errors
