"""The health-check settings in force for a target, compiled once per configuration.

They come from the upstream's ``healthchecks`` record (Kong's, with the seeds'
``health_checks`` short form already mapped onto it), overridden field by
field by the target's own ``healthchecks`` and ``health_checks``. The record
is validated by the entity schemas (``kong_py.schemas.healthchecks``) when it
is written; here it is only read.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kong_py.schemas.healthchecks import Healthchecks, HealthChecksShort, merge_into, short_form_overrides


#: a free endpoint of each provider, probed instead of ``/`` (never a paid completion)
PROBE_PATHS: dict[str, str] = {
    "openai": "/v1/models", "openai-compatible": "/v1/models", "anthropic": "/v1/models",
    "mistral": "/v1/models", "groq": "/openai/v1/models", "deepseek": "/models", "together": "/v1/models",
    "fireworks": "/inference/v1/models", "openrouter": "/api/v1/models", "xai": "/v1/models",
    "cohere": "/v1/models", "gemini": "/v1beta/models", "google": "/v1beta/models",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """One source's counting rules (Kong's ``active`` or ``passive`` healthy/unhealthy)."""

    healthy_statuses: frozenset[int]
    successes: int
    unhealthy_statuses: frozenset[int]
    http_failures: int
    tcp_failures: int
    timeouts: int

    @property
    def counting(self) -> bool:
        return bool(self.successes or self.http_failures or self.tcp_failures or self.timeouts)

    def classify_status(self, status: int) -> str | None:
        """"success", "http_failures" or None (a status in neither list changes nothing)."""
        if status in self.healthy_statuses:
            return "success"
        if status in self.unhealthy_statuses:
            return "http_failures"
        return None


@dataclass(frozen=True, slots=True)
class Recovery:
    base_ejection_time: float
    max_ejection_time: float
    half_open_requests: int


@dataclass(frozen=True, slots=True)
class Probe:
    """How active probes are sent."""

    type: str
    http_path: str
    headers: tuple[tuple[str, str], ...]
    timeout: float
    concurrency: int
    https_sni: str | None
    https_verify_certificate: bool
    healthy_interval: float
    unhealthy_interval: float


@dataclass(frozen=True, slots=True)
class Settings:
    #: the effective record, as the health API shows it
    record: dict[str, Any]
    probe: Probe
    active: Limits
    passive: Limits
    recovery: Recovery

    @property
    def active_on(self) -> bool:
        return bool(self.probe.healthy_interval or self.probe.unhealthy_interval)

    @property
    def passive_on(self) -> bool:
        return self.passive.counting

    @property
    def enabled(self) -> bool:
        """False: HEALTHCHECKS_OFF (Kong's state for a target nothing checks)."""
        return self.active_on or self.passive_on

    @property
    def probes_recover(self) -> bool:
        """Unhealthy targets are probed and enough successes bring them back."""
        return bool(self.probe.unhealthy_interval and self.active.successes)

    def interval(self, healthy: bool) -> float:
        return self.probe.healthy_interval if healthy else self.probe.unhealthy_interval


def effective_record(upstream: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """The upstream's record with the target's own settings over it; a provider
    target left on the default ``/`` is probed on its provider's free endpoint."""
    record = copy.deepcopy(upstream.get("healthchecks") or Healthchecks().model_dump(mode="json"))
    short = target.get("health_checks")
    if short:
        merge_into(record, short_form_overrides(HealthChecksShort.model_validate(short)))
    override = target.get("healthchecks")
    if override:
        merge_into(record, copy.deepcopy(override))
    provider_path = PROBE_PATHS.get((target.get("provider") or "").lower())
    if provider_path and record["active"]["http_path"] == "/":
        record["active"]["http_path"] = provider_path
    return record


def compile_settings(record: dict[str, Any]) -> Settings:
    active, passive = record["active"], record["passive"]
    headers = tuple((name, value) for name, values in (active.get("headers") or {}).items()
                    for value in values)
    probe = Probe(
        type=active["type"], http_path=active["http_path"], headers=headers,
        timeout=float(active["timeout"]), concurrency=int(active["concurrency"]),
        https_sni=active.get("https_sni"), https_verify_certificate=bool(active["https_verify_certificate"]),
        healthy_interval=float(active["healthy"]["interval"]),
        unhealthy_interval=float(active["unhealthy"]["interval"]))
    recovery = passive.get("recovery") or {}
    return Settings(
        record=record, probe=probe, active=_limits(active), passive=_limits(passive),
        recovery=Recovery(float(recovery.get("base_ejection_time", 30)),
                          float(recovery.get("max_ejection_time", 300)),
                          int(recovery.get("half_open_requests", 1))))


def _limits(source: dict[str, Any]) -> Limits:
    healthy, unhealthy = source["healthy"], source["unhealthy"]
    return Limits(frozenset(healthy["http_statuses"]), int(healthy["successes"]),
                  frozenset(unhealthy["http_statuses"]), int(unhealthy["http_failures"]),
                  int(unhealthy["tcp_failures"]), int(unhealthy["timeouts"]))


def settings_for(upstream: dict[str, Any], target: dict[str, Any],
                 shared: dict[str, Settings]) -> Settings:
    """The target's settings; targets without overrides share their upstream's
    (per provider)."""
    if not target.get("healthchecks") and not target.get("health_checks"):
        key = f"{upstream['id']}|{(target.get('provider') or '').lower()}"
        found = shared.get(key)
        if found is None:
            found = shared[key] = compile_settings(effective_record(upstream, target))
        return found
    return compile_settings(effective_record(upstream, target))
