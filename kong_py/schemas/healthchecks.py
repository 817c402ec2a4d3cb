"""Kong's ``healthchecks`` record with Kong's defaults, and the seeds' short form.

The seeds' ``health_checks {passive, path, interval, threshold, headers}`` is a
shorthand: it is mapped onto the full record so there is one source of truth.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from .base import Schema, as_list, between
from .headers import HeaderListMap, HeaderMap

def _number(value: Any) -> int | float:
    """Kong's ``number``: an int or a float, also from a form's text, one message when not."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                pass
    raise ValueError("expected a number")


Number = Annotated[int | float, BeforeValidator(_number)]
Interval = Annotated[Number, between(0, 65535)]
Count = Annotated[int, between(0, 255)]
Statuses = Annotated[list[Annotated[int, between(100, 999)]], BeforeValidator(as_list)]


def _absolute(path: str) -> str:
    """Probes request this path as is, so it must be absolute (Kong's typedefs.path)."""
    if not path.startswith("/"):
        raise ValueError("should start with: /")
    return path


Path = Annotated[str, AfterValidator(_absolute)]


class ActiveHealthy(Schema):
    interval: Interval = 0
    http_statuses: Statuses = Field(default_factory=lambda: [200, 302])
    successes: Count = 0


class ActiveUnhealthy(Schema):
    interval: Interval = 0
    http_statuses: Statuses = Field(default_factory=lambda: [429, 404, 500, 501, 502, 503, 504, 505])
    tcp_failures: Count = 0
    timeouts: Count = 0
    http_failures: Count = 0


class Active(Schema):
    type: Literal["tcp", "http", "https", "grpc", "grpcs"] = "http"
    timeout: Interval = 1
    concurrency: Annotated[int, between(1, 2147483648)] = 10
    http_path: Path = "/"
    https_sni: str | None = None
    https_verify_certificate: bool = True
    headers: HeaderListMap = None
    healthy: ActiveHealthy = Field(default_factory=ActiveHealthy)
    unhealthy: ActiveUnhealthy = Field(default_factory=ActiveUnhealthy)


class PassiveHealthy(Schema):
    http_statuses: Statuses = Field(default_factory=lambda: [
        200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
        300, 301, 302, 303, 304, 305, 306, 307, 308])
    successes: Count = 0


class PassiveUnhealthy(Schema):
    http_statuses: Statuses = Field(default_factory=lambda: [429, 500, 503])
    tcp_failures: Count = 0
    timeouts: Count = 0
    http_failures: Count = 0


class Recovery(Schema):
    """How a target ejected by passive checks comes back without a probe or a manual call.

    After ``base_ejection_time`` seconds (0: never by itself, Kong's behaviour)
    the target goes half-open: at most ``half_open_requests`` real requests
    at a time reach it. A success closes the circuit; a failure ejects it
    again for twice as long, up to ``max_ejection_time``.
    """

    base_ejection_time: Interval = 30
    max_ejection_time: Interval = 300
    half_open_requests: Annotated[int, between(1, 65535)] = 1


class Passive(Schema):
    type: Literal["tcp", "http", "https", "grpc", "grpcs"] = "http"
    healthy: PassiveHealthy = Field(default_factory=PassiveHealthy)
    unhealthy: PassiveUnhealthy = Field(default_factory=PassiveUnhealthy)
    recovery: Recovery = Field(default_factory=Recovery)


class Healthchecks(Schema):
    active: Active = Field(default_factory=Active)
    passive: Passive = Field(default_factory=Passive)
    threshold: Annotated[Number, between(0, 100)] = 0


class TargetHealthchecks(Schema):
    """A target's own health-check settings: the fields given override the upstream's
    for that target only (the upstream's ``threshold`` applies to all its targets)."""

    active: Active | None = None
    passive: Passive | None = None


class HealthChecksShort(Schema):
    """The seeds' ``health_checks`` object."""

    passive: bool | None = None
    path: Path | None = None
    interval: Interval | None = None
    threshold: Annotated[int, between(0, 255)] | None = None
    headers: HeaderMap = None


def short_form_overrides(short: HealthChecksShort) -> dict[str, Any]:
    """The fields of Kong's nested record that the seeds' short form sets.

    ``threshold`` (default 3) is the number of consecutive failures that marks
    a target unhealthy and of successes that brings it back; ``interval`` turns
    active probing on at that period (0 turns it off), on ``path`` with
    ``headers``; ``passive: true`` turns passive checking on with the same
    threshold (``false`` turns it off).
    """
    threshold = short.threshold if short.threshold is not None else 3
    active: dict[str, Any] = {}
    passive: dict[str, Any] = {}
    if short.path is not None:
        active["http_path"] = short.path
    if short.headers is not None:
        active["headers"] = {k: [v] for k, v in short.headers.items()}
    if short.interval is not None:
        active["healthy"] = {"interval": short.interval}
        active["unhealthy"] = {"interval": short.interval}
    if short.interval:
        active["healthy"]["successes"] = threshold
        active["unhealthy"].update(http_failures=threshold, tcp_failures=threshold, timeouts=threshold)
    if short.passive is not None:
        count = threshold if short.passive else 0
        passive["healthy"] = {"successes": count}
        passive["unhealthy"] = {"http_failures": count, "tcp_failures": count, "timeouts": count}
    out: dict[str, Any] = {}
    if active:
        out["active"] = active
    if passive:
        out["passive"] = passive
    return out


def apply_short_form(healthchecks: dict[str, Any], short: HealthChecksShort) -> dict[str, Any]:
    """Map the seeds' short form onto Kong's nested record (in place, returned)."""
    merge_into(healthchecks, short_form_overrides(short))
    return healthchecks


def merge_into(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into ``base`` (in place): records field by field,
    everything else (lists, maps of headers, scalars) replaced."""
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "headers":
            merge_into(base[key], value)
        else:
            base[key] = value
    return base
