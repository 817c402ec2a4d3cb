"""A target as the proxy uses it: prepared once per snapshot."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .runtime import DISABLED, DRAINING, TargetRuntime


@dataclass(slots=True, eq=False)
class TargetInfo:
    id: str
    upstream_id: str
    target: str
    host: str
    port: int
    #: http or https; None means "the service's protocol"
    protocol: str | None
    path: str | None
    weight: int
    priority: int
    backup: bool
    state: str | None
    provider: str | None
    headers: tuple[tuple[str, str], ...]
    models: tuple[str, ...]
    default_model: str | None
    credentials: dict[str, Any] | None
    runtime: TargetRuntime
    #: most requests in flight to it across the node's workers (0: no limit)
    max_conns: int = 0
    #: the target entity as stored (plugins read their settings from it)
    entity: dict[str, Any] = field(default_factory=dict)
    #: ``host:port`` as sent in the Host header (default ports left out)
    host_header: str = ""

    @property
    def enabled(self) -> bool:
        """Configured to take traffic (weight > 0, not draining or disabled)."""
        return self.weight > 0 and self.state not in (DRAINING, DISABLED)

    def available(self, now: float) -> bool:
        """Enabled, healthy and not cooling down after a 429."""
        rt = self.runtime
        return self.weight > 0 and rt.healthy and rt.cooldown_until <= now and self.state not in (DRAINING, DISABLED)

    @classmethod
    def from_entity(cls, entity: dict[str, Any], runtime: TargetRuntime) -> "TargetInfo":
        host, port = entity["host"], entity["port"]
        protocol = entity.get("protocol")
        default = 443 if protocol == "https" else 80
        bracketed = f"[{host}]" if ":" in host else host
        return cls(
            id=entity["id"], upstream_id=entity["upstream"]["id"], target=entity["target"],
            host=host, port=port, protocol=protocol, path=entity.get("path"),
            weight=entity.get("weight", 100), priority=entity.get("priority", 1),
            backup=bool(entity.get("backup")), state=entity.get("state"),
            provider=entity.get("provider"),
            headers=tuple((entity.get("headers") or {}).items()),
            models=tuple(entity.get("models") or ()), default_model=entity.get("default_model"),
            credentials=entity.get("credentials"), runtime=runtime, max_conns=entity.get("max_conns") or 0, entity=entity,
            host_header=bracketed if port == default and protocol else f"{bracketed}:{port}",
        )
