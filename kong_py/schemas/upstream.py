"""The Upstream entity: a virtual host balanced over its targets."""
from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from .base import Schema, Tags, between, is_hostname
from .headers import HeaderName, HeaderValue
from .healthchecks import Healthchecks, HealthChecksShort, Interval, Number

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


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an upstream name, in Kong's words (None: it can)."""
    if name.count(":") > 1:  # IPv6, maybe bracketed with a port
        host = name[1:].partition("]")[0] if name.startswith("[") else name
        return "no ip addresses allowed" if _is_ip(host) else "must be a valid hostname"
    host, sep, port = name.partition(":")
    if sep and not (port.isdigit() and 0 < int(port) < 65536):
        return "must be a valid hostname"
    if all(c.isdigit() or c == "." for c in host):
        return "no ip addresses allowed" if _is_ip(host) else "must be a valid hostname"
    if not is_hostname(host):
        return "must be a valid hostname"
    return "no port allowed" if sep else None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class Proxy(Schema):
    """The seeds' forward proxy that upstream traffic goes through.

    The gateway speaks plain HTTP to the proxy: http targets in absolute form,
    https targets through a CONNECT tunnel (TLS end to end with the target).
    """

    host: str
    port: Annotated[int, between(1, 65535)]
    protocol: Literal["http"] = "http"


class SlowStart(Schema):
    """Gradual recovery: a target that becomes eligible (back from UNHEALTHY, DISABLED
    or DRAINING, or newly added) ramps from ``min_weight_percent`` of its weight
    to all of it over ``window`` seconds (0: off), Envoy's ramp with ``aggression``."""

    window: Annotated[Interval, between(0, 3600)] = 0
    min_weight_percent: Annotated[Number, between(1, 100)] = 10
    aggression: Annotated[Number, between(0.05, 100)] = 1.0


class Upstream(Schema):
    name: str
    algorithm: str = "round-robin"
    hash_on: HashOn = "none"
    hash_fallback: HashOn = "none"
    hash_on_header: HeaderName | None = None
    hash_fallback_header: HeaderName | None = None
    hash_on_cookie: str | None = None
    hash_on_cookie_path: str = "/"
    hash_on_query_arg: str | None = None
    hash_fallback_query_arg: str | None = None
    hash_on_uri_capture: str | None = None
    hash_fallback_uri_capture: str | None = None
    slots: Annotated[int, between(10, 65536)] = 10000
    healthchecks: Healthchecks = Field(default_factory=Healthchecks)
    health_checks: HealthChecksShort | None = None
    slow_start: SlowStart = Field(default_factory=SlowStart)
    host_header: HeaderValue | None = None
    use_srv_name: bool = False
    proxy: Proxy | None = None
    tags: Tags = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        """Kong's rule: services reach an upstream by name, so it must be a bare hostname."""
        problem = _name_problem(value)
        if problem:
            raise ValueError(f"Invalid name ('{value}'); {problem}")
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

    def entity_errors(self, algorithms: list[str]) -> dict[str, Any]:
        """Kong's cross-field rules, with Kong's messages, keyed by field.

        ``algorithms`` are the canonical names registered by plugins, in
        registration order (aliases are resolved before this check).
        """
        errors: dict[str, Any] = {}
        if self.algorithm not in algorithms:
            errors["algorithm"] = "expected one of: " + ", ".join(algorithms)
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
