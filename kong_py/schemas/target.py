"""The Target entity: one backend (host:port or LLM provider) of an upstream."""
from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, field_validator

from .base import Schema, StrList, Tags, between, is_hostname
from .headers import HeaderMap, HeaderName, HeaderValue
from .healthchecks import HealthChecksShort, TargetHealthchecks
from .providers import PROVIDER_HOSTS
from .references import check_references, has_reference

DEFAULT_PORT = 8000
SECRET_FIELDS = ("header_value", "param_value", "aws_access_key_id", "aws_secret_access_key",
                 "aws_session_token", "azure_client_secret", "gcp_service_account_json")
#: credential fields that are names, not values: never references
NAME_FIELDS = ("header_name", "param_name", "param_location")


class Credentials(Schema):
    """How the gateway authenticates to this target. Values are secrets; any value
    (not a name) may be or contain a vault reference, ``{vault://env/NAME}``,
    resolved when a request uses it. The bundled ``credentials`` plugin injects them."""

    header_name: HeaderName | None = None
    header_value: HeaderValue | None = None
    param_name: str | None = None
    param_value: str | None = None
    #: where param_name=param_value goes: the query string, the JSON or form body, or
    #: the ``{param_name}`` placeholder of the target's path
    param_location: Literal["query", "body", "path"] | None = None
    allow_override: bool = Field(False, validation_alias=AliasChoices("allow_override", "callow_override"))
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    aws_region: str | None = None
    aws_service: str | None = None
    azure_client_id: str | None = None
    azure_client_secret: str | None = None
    azure_tenant_id: str | None = None
    azure_use_managed_identity: bool = False
    gcp_service_account_json: str | None = None
    gcp_use_service_account: bool = False

    @field_validator("aws_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        """It becomes part of Bedrock's host name: only a region's shape (us-east-1)."""
        if value is not None and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d{1,2}", value):
            raise ValueError("expected an AWS region such as us-east-1")
        return value

    def pair_errors(self) -> dict[str, str]:
        """A credential name without its value (or the reverse) is incomplete; so is
        half of a key pair. References must be well formed. Messages never show values."""
        errors: dict[str, str] = {}
        for name, value in (("header_name", "header_value"), ("param_name", "param_value"),
                            ("aws_access_key_id", "aws_secret_access_key")):
            if getattr(self, name) is not None and getattr(self, value) is None:
                errors[value] = "required field missing"
            elif getattr(self, value) is not None and getattr(self, name) is None:
                errors[name] = "required field missing"
        if self.aws_session_token is not None and self.aws_access_key_id is None:
            errors.setdefault("aws_access_key_id", "required field missing")
        if self.azure_client_secret is not None:
            for field in ("azure_client_id", "azure_tenant_id"):
                if getattr(self, field) is None:
                    errors[field] = "required field missing"
        if self.param_name is not None and self.param_location is None:
            self.param_location = "query"
        for field, value in self:
            if field in NAME_FIELDS or not isinstance(value, str):
                continue
            try:
                check_references(value)
            except ValueError as exc:
                errors[field] = str(exc)
        if (self.param_location == "path" and self.param_name is not None
                and not _PARAM_NAME.fullmatch(self.param_name)):
            errors["param_name"] = "a path placeholder name: letters, digits, '_', '-' and '.'"
        sa = self.gcp_service_account_json
        if sa is not None and "gcp_service_account_json" not in errors and not has_reference(sa):
            if not _looks_like_service_account(sa):
                errors["gcp_service_account_json"] = (
                    "expected a service account key: a JSON object with type 'service_account', "
                    "client_email and private_key")
        return errors


_PARAM_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _looks_like_service_account(text: str) -> bool:
    try:
        info = json.loads(text)
    except ValueError:
        return False
    return (isinstance(info, dict) and info.get("type") == "service_account"
            and all(isinstance(info.get(k), str) for k in ("client_email", "private_key")))


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def split_target(target: str) -> tuple[str, int | None]:
    """Parse Kong's ``host[:port]`` (IPv6 in brackets); port is None when omitted."""
    text = target.strip()
    invalid = ValueError(f"Invalid target ('{target}'); not a valid hostname or ip address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise invalid
        port_text = rest[1:] if rest else None
        _check_host(host, target, ipv6=True)
    elif text.count(":") > 1:
        _check_host(text, target, ipv6=True)  # a bare IPv6 address
        return text, None
    else:
        host, sep, port_text = text.partition(":")
        port_text = port_text if sep else None
        _check_host(host, target)
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise invalid
    return host, int(port_text)


def _check_host(host: str, original: str, ipv6: bool = False) -> None:
    if ipv6:
        try:
            ipaddress.IPv6Address(host)
            return
        except ValueError:
            raise ValueError(f"Invalid target ('{original}'); not a valid hostname or ip address") from None
    if not is_hostname(host):
        raise ValueError(f"Invalid target ('{original}'); not a valid hostname or ip address")


def _default_port(protocol: str | None, field: str) -> int:
    """Kong's ``target`` defaults to 8000; the seeds' ``host`` to the protocol's port."""
    if field == "host" and protocol is not None:
        return 443 if protocol == "https" else 80
    return DEFAULT_PORT


def join_target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Target(Schema):
    target: str | None = None
    host: str | None = None
    port: Annotated[int, between(1, 65535)] | None = None
    protocol: Literal["http", "https"] | None = None
    path: str | None = None
    weight: Annotated[int, between(0, 65535)] = 100
    priority: Annotated[int, between(0, 65535)] = 1
    backup: bool = False
    #: ENABLED takes traffic; DRAINING takes no new requests but finishes those in
    #: flight (health checks go on); DISABLED takes no traffic and is not checked
    state: Annotated[Literal["ENABLED", "DRAINING", "DISABLED"], BeforeValidator(_upper)] = "ENABLED"
    provider: str | None = None
    headers: HeaderMap = None
    default_model: str | None = None
    models: StrList | None = None
    #: model names clients use -> the names this target knows them by (an Azure deployment)
    model_aliases: dict[str, str] | None = None
    #: the provider API version to call (Azure OpenAI's ``api-version``)
    api_version: str | None = None
    credentials: Credentials | None = None
    #: requests in flight to this target across the node's workers (0: no limit; nginx's name)
    max_conns: Annotated[int, between(0, 2147483647)] = 0
    #: this target's own health-check settings, over the upstream's (only the fields given)
    healthchecks: TargetHealthchecks | None = None
    health_checks: HealthChecksShort | None = None
    upstream: dict[str, Any] | None = None
    tags: Tags = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("should start with: /")
        return value

    def normalize(self) -> dict[str, Any]:
        """Fill ``target``/``host``/``port`` from each other; errors keyed by field."""
        errors: dict[str, Any] = {}
        if self.target is not None or self.host is not None:
            field = "target" if self.target is not None else "host"
            try:
                host, port = split_target(self.target if self.target is not None else self.host)
            except ValueError as exc:
                return {field: str(exc)}
            self.host = host
            self.port = port or self.port or _default_port(self.protocol, field)
        elif self.provider is not None and self.provider.lower() in PROVIDER_HOSTS:
            self.host = PROVIDER_HOSTS[self.provider.lower()]
            self.port = self.port or 443
            self.protocol = self.protocol or "https"
        elif self.provider is not None and self.provider.lower() == "bedrock":
            # Bedrock's endpoint is per region: the region of the target's AWS credentials
            region = (self.credentials.aws_region if self.credentials else None) or "us-east-1"
            self.host = f"bedrock-runtime.{region}.amazonaws.com"
            self.port = self.port or 443
            self.protocol = self.protocol or "https"
        elif self.provider is not None and self.provider.lower() in ("azure", "openai-compatible"):
            return {"host": f"required field missing (a '{self.provider}' target names its server)"}
        else:
            return {"target": "required field missing"}
        self.target = join_target(self.host, self.port)
        if self.credentials is not None and (cred_errors := self.credentials.pair_errors()):
            errors["credentials"] = cred_errors
        if self.default_model is not None and self.models and self.default_model not in self.models:
            errors["default_model"] = "must be one of the target's models"
        return errors
