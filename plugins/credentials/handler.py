"""The ``credentials`` plugin: each target's own credentials on the requests sent to it.

Bundled and always on. In the ``balancer`` phase, after the load balancer chose
``ctx.target`` (and again on every retry, for the next target), it reads the
target's ``credentials`` and puts them into ``ctx.upstream_request``:

- ``header_name`` / ``header_value``: a header (``Authorization: Bearer ...``,
  ``x-api-key``, Azure's ``api-key``).
- ``param_name`` / ``param_value`` at ``param_location``: ``query`` (added to or
  replaced in the query string), ``body`` (a field of the JSON object or form
  body) or ``path`` (the ``{param_name}`` placeholder of the target's path).
- ``azure_client_id`` / ``azure_client_secret`` / ``azure_tenant_id``, or
  ``azure_use_managed_identity``: an Entra ID token (azure-identity) for
  ``https://cognitiveservices.azure.com/.default``, as ``Authorization: Bearer``.
- ``gcp_service_account_json``, or ``gcp_use_service_account`` (the
  environment's application default credentials): a Google token (google-auth),
  as ``Authorization: Bearer``.
- ``aws_access_key_id`` / ``aws_secret_access_key`` (``aws_session_token``,
  ``aws_region``, ``aws_service``): the request is signed with AWS SigV4
  (botocore), last, over the final method, Host, path, query and body.

With ``allow_override`` false (the default) the client's own value for the
header or parameter, and any ``Authorization``, ``x-api-key``, ``api-key`` or
``x-goog-api-key`` header it sent, is removed before the target's is put in;
with ``allow_override`` true a value the client sent is kept and the target's
is only added where the client sent none.

Values may be or contain vault references, ``{vault://env/NAME}``, resolved
from the gateway's environment on each use. A credential that cannot be used
(a missing variable, a token endpoint that fails) answers the request itself
with a Kong error body naming the field or the reference and never a value;
the target is not called.

Ordering contract: this plugin's ``PRIORITY`` is -100, below every other
bundled plugin and Kong's whole usual range, so its ``balancer`` hook runs
after all the others. A plugin that changes the upstream request for the
chosen target in its own ``balancer`` hook (``ai-proxy`` translates the body
and sets the provider's path there) must have a higher ``PRIORITY``: this hook
then sees the final path, query and body, which a body parameter edits and
the SigV4 signature covers. A balancer hook running after this one must not
change the request of a target with AWS credentials (the signature would no
longer match).
"""
from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING, Any

from kong_py.hookspecs import hookimpl

from . import aws
from .errors import CredentialError
from .inject import (CLIENT_AUTH_HEADERS, CLIENT_SIGNING_HEADERS, body_with, check_header_value, set_header,
                     set_path, set_query, strip_client_headers)
from .tokens import TokenSource, TokenSources, azure_fetch, gcp_fetch
from .vault import Template, prepare

if TYPE_CHECKING:
    from kong_py.balancer.target import TargetInfo
    from kong_py.proxy.context import Context

log = logging.getLogger("kong_py_plugins.credentials")

#: fields whose values are used (and may hold references); the others are names or flags
VALUE_FIELDS = ("header_value", "param_value", "aws_access_key_id", "aws_secret_access_key",
                "aws_session_token", "aws_region", "aws_service", "azure_client_id", "azure_client_secret",
                "azure_tenant_id", "gcp_service_account_json")
MAX_PLANS = 10_000


class Plan:
    """One target's credentials, prepared once per configuration (not per request)."""

    __slots__ = ("source", "override", "header_name", "param_name", "param_location", "values",
                 "azure", "managed_identity", "gcp", "gcp_environment", "aws", "strip",
                 "_token", "_token_settings")

    def __init__(self, creds: dict[str, Any]) -> None:
        self.source = creds
        self.override = bool(creds.get("allow_override", creds.get("callow_override", False)))
        self.values: dict[str, str | Template] = {
            field: prepare(creds[field]) for field in VALUE_FIELDS if isinstance(creds.get(field), str)}
        self.header_name: str | None = creds.get("header_name") if "header_value" in self.values else None
        self.param_name: str | None = creds.get("param_name") if "param_value" in self.values else None
        self.param_location: str = creds.get("param_location") or "query"
        self.managed_identity = bool(creds.get("azure_use_managed_identity"))
        self.azure = self.managed_identity or "azure_client_secret" in self.values
        self.gcp_environment = bool(creds.get("gcp_use_service_account")) and "gcp_service_account_json" not in self.values
        self.gcp = self.gcp_environment or "gcp_service_account_json" in self.values
        self.aws = "aws_access_key_id" in self.values and "aws_secret_access_key" in self.values
        strip = list(CLIENT_AUTH_HEADERS)
        if self.header_name is not None and self.header_name.lower() not in strip:
            strip.append(self.header_name.lower())
        if self.aws:
            strip.extend(CLIENT_SIGNING_HEADERS)
        self.strip = tuple(strip)
        self._token: TokenSource | None = None
        self._token_settings: tuple[Any, ...] | None = None

    @property
    def active(self) -> bool:
        return bool(self.header_name or self.param_name or self.azure or self.gcp or self.aws)

    def value(self, field: str) -> str | None:
        value = self.values.get(field)
        if value is None or isinstance(value, str):
            return value
        return value.resolve(field)

    def token_source(self, sources: TokenSources, resolved: dict[str, str | None]) -> TokenSource:
        if self.azure:
            settings: tuple[Any, ...] = ("azure", resolved.get("azure_client_id"), resolved.get("azure_client_secret"),
                                         resolved.get("azure_tenant_id"), self.managed_identity)
        else:
            settings = ("gcp", resolved.get("gcp_service_account_json"))
        if self._token is None or self._token_settings != settings:
            if settings[0] == "azure":
                make = lambda: azure_fetch(*settings[1:])  # noqa: E731
                kind = "Azure"
            else:
                make = lambda: gcp_fetch(settings[1])  # noqa: E731
                kind = "Google Cloud"
            self._token = sources.get(kind, settings, make)
            self._token_settings = settings
        return self._token


class Credentials:
    name = "credentials"
    PRIORITY = -100  # after every other balancer hook: see the module docstring
    VERSION = "1.0.0"
    ALWAYS_ON = True

    def __init__(self) -> None:
        #: per target id: (the credentials dict it was made from, its plan)
        self._plans: dict[str, tuple[dict[str, Any], Plan]] = {}
        self.tokens = TokenSources()
        #: what was already logged (a missing reference is reported once, not per request)
        self._logged: set[str] = set()

    def _plan(self, target: "TargetInfo") -> Plan | None:
        creds = target.credentials
        if not creds:
            return None
        cached = self._plans.get(target.id)
        if cached is not None and cached[0] is creds:
            return cached[1]
        plan = Plan(creds)
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        self._plans[target.id] = (creds, plan)
        return plan

    @hookimpl
    async def balancer(self, ctx: "Context") -> None:
        target = ctx.target
        if target is None:
            return
        plan = self._plan(target)
        if plan is None or not plan.active:
            return
        try:
            await self._apply(ctx, plan)
        except CredentialError as exc:
            failure = exc
        except Exception as exc:  # a library's or our own: its message may hold a value
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            log.error("credentials of target %s could not be applied: %s%s", target.target, type(exc).__name__,
                      f" at {where.filename}:{where.lineno}" if where else "")
            failure = CredentialError(500, "An unexpected error occurred")
        else:
            return
        if failure.log_key is not None and failure.log_key not in self._logged:
            self._logged.add(failure.log_key)
            log.error("target %s: %s", target.target, failure.log_message)
        ctx.exit(failure.status, {"message": failure.message})

    async def _apply(self, ctx: "Context", plan: Plan) -> None:
        resolved = {field: plan.value(field) for field in plan.values}
        upstream = ctx.upstream_request
        headers = upstream.headers
        override = plan.override
        if not override:
            strip_client_headers(ctx, plan.strip)
        if plan.header_name is not None:
            value = resolved["header_value"]
            assert value is not None
            if isinstance(plan.values["header_value"], Template):
                check_header_value(value, "header_value")
            set_header(ctx, plan.header_name, value, override)
        if plan.param_name is not None:
            value = resolved["param_value"]
            assert value is not None
            location = plan.param_location
            if location == "query":
                set_query(ctx, plan.param_name, value, override)
            elif location == "path":
                set_path(ctx, plan.param_name, value)
            else:
                body = await _final_body(ctx, "carry this target's credentials")
                new_body, content_type = body_with(body, headers.get("Content-Type"), plan.param_name, value, override)
                if new_body is not body:
                    upstream.body = new_body
                if content_type is not None:
                    headers["Content-Type"] = content_type
        if (plan.azure or plan.gcp) and not (override and "Authorization" in headers):
            token = await plan.token_source(self.tokens, resolved).get()
            headers["Authorization"] = f"Bearer {check_header_value(token, 'token')}"
        if plan.aws and not (override and "Authorization" in headers):
            await _sign(ctx, resolved)


def _declares_body(ctx: "Context") -> bool:
    headers = ctx.request.headers
    length = headers.get("Content-Length")
    return (length is not None and length.strip() != "0") or "Transfer-Encoding" in headers


async def _final_body(ctx: "Context", purpose: str) -> bytes:
    """The body that will be sent: a plugin's replacement, else the client's (the
    proxy buffered it before the balancer phase, up to retry_body_limit)."""
    upstream = ctx.upstream_request
    if upstream.body is not None:
        return upstream.body
    if not _declares_body(ctx):
        return b""
    if ctx.body is None:
        # not buffered: larger than retry_body_limit, it is being streamed through
        # (reading it here would take what the proxy has not relayed yet)
        raise CredentialError(413, f"The request body is too large to {purpose} "
                                   "(more than the gateway's retry_body_limit)")
    return await ctx.read_body()  # the buffered body


def upstream_host(ctx: "Context") -> str:
    """The Host header the gateway sends to ``ctx.target`` (the core's rule: the
    client's with ``route.preserve_host``, else ``upstream.host_header``, else the
    target's ``host[:port]``, the port left out when it is the protocol's default)."""
    target = ctx.target
    assert target is not None
    if (ctx.route or {}).get("preserve_host") and ctx.request.host:
        return ctx.request.host
    configured = (ctx.upstream or {}).get("host_header")
    if configured:
        return configured
    if target.protocol:
        return target.host_header
    default = 443 if (ctx.service or {}).get("protocol") == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    return host if target.port == default else f"{host}:{target.port}"


async def _sign(ctx: "Context", resolved: dict[str, str | None]) -> None:
    target = ctx.target
    assert target is not None
    upstream = ctx.upstream_request
    headers = upstream.headers
    body = await _final_body(ctx, "be signed")
    host = upstream_host(ctx)
    for name in ("X-Amz-Date", "X-Amz-Security-Token", "Authorization"):
        headers.popall(name, None)
    signed = {"Host": host}
    for name, value in headers.items():
        lower = name.lower()
        if lower in aws.SIGNED or lower.startswith("x-amz-"):
            signed[name] = value
    scheme = target.protocol or (ctx.service or {}).get("protocol") or "http"
    try:
        added = aws.sign(
            upstream.method, scheme, host, upstream.path, upstream.query_string, signed, body,
            resolved["aws_access_key_id"] or "", resolved["aws_secret_access_key"] or "",
            resolved.get("aws_session_token") or None,
            aws.region_for(target.host, resolved.get("aws_region")),
            resolved.get("aws_service") or aws.DEFAULT_SERVICE)
    except Exception as exc:  # botocore's message could quote a value: keep its type only
        raise CredentialError(
            500, "Could not sign the request with the target's AWS credentials "
                 "(credentials.aws_access_key_id, aws_secret_access_key)",
            log_key=f"aws:{target.id}",
            log_message=f"could not sign with the AWS credentials: {type(exc).__name__}") from None
    for name, value in added.items():
        headers[name] = value
