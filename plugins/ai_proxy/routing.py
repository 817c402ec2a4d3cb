"""Model routing (the seeds' "Fallback Strategy"): which targets may serve a request.

1. The targets that list the requested model in ``models`` serve it, as is.
2. Else the targets without a ``models`` list (they take any model name).
3. Else the targets with a ``default_model`` serve it, with their model.
4. A request without a model goes to the targets with a ``default_model``,
   else to those without a ``models`` list, as it is.

Embeddings only go to providers that have an embeddings endpoint. A target's
``model_aliases`` renames the model it is sent (an Azure deployment name).
The balancer then chooses among them: algorithm, priority tiers, health and
retries all apply within this set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .providers import provider_for
from .providers.base import Provider


@dataclass(frozen=True, slots=True)
class AiTarget:
    target: Any  # TargetInfo
    provider: Provider
    models: frozenset[str] | None
    default_model: str | None
    aliases: dict[str, str]

    @classmethod
    def of(cls, target: Any) -> "AiTarget | None":
        provider = provider_for(target.provider)
        if provider is None:
            return None
        aliases = dict(target.entity.get("model_aliases") or {}) if target.entity else {}
        return cls(target, provider, frozenset(target.models) if target.models else None, target.default_model,
                   aliases)

    def sent_as(self, model: str) -> str:
        return self.aliases.get(model, model)


def eligible(targets: list[AiTarget], model: str | None, kind: str) -> dict[str, tuple[AiTarget, str]]:
    """Target id -> (target, model to send) for the targets that may serve the request."""
    if kind == "embeddings":
        targets = [t for t in targets if t.provider.embeddings]
    if model:
        chosen = {t.target.id: (t, t.sent_as(model)) for t in targets if t.models is not None and model in t.models}
        if not chosen:
            chosen = {t.target.id: (t, t.sent_as(model)) for t in targets if t.models is None}
        if chosen:
            return chosen
    chosen = {t.target.id: (t, t.sent_as(t.default_model)) for t in targets if t.default_model}
    if not chosen and not model:  # no model, no default: the targets that take any (the provider decides)
        chosen = {t.target.id: (t, "") for t in targets if t.models is None}
    return chosen


def listed_models(targets: list[AiTarget]) -> list[tuple[str, str]]:
    """(model, provider) pairs the upstream serves, for ``GET .../models``."""
    seen: dict[str, str] = {}
    for t in targets:
        for model in sorted(t.models or ()):
            seen.setdefault(model, t.provider.name)
        if t.default_model:
            seen.setdefault(t.default_model, t.provider.name)
    return sorted(seen.items())
