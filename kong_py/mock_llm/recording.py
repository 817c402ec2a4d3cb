"""Every request the mock received, so tests can check what a provider was sent.

A gateway test asserts on what left the gateway (which key, which model, which body after
translation); the record keeps it verbatim: header names lower-cased (HTTP does not care
about case, lookups should not either), the raw body and its JSON parse.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass
class RecordedRequest:
    """One request as received; ``provider`` and ``model`` are filled in when a route matched."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any                      # parsed JSON, or None when the body was empty or not JSON
    raw_body: bytes
    provider: str | None = None    # openai, azure, anthropic, gemini, bedrock (None: no route)
    model: str | None = None       # the model asked for (body, path or deployment)
    stream: bool = False
    time: float = field(default_factory=time.time)

    def header(self, name: str, default: str | None = None) -> str | None:
        """A header's value whatever the case of ``name`` (repeated ones joined by ", ")."""
        return self.headers.get(name.lower(), default)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method, "path": self.path, "query": self.query, "headers": self.headers,
            "body": self.body, "body_text": self.raw_body.decode("utf-8", "replace"),
            "provider": self.provider, "model": self.model, "stream": self.stream, "time": self.time,
        }

    @classmethod
    def of(cls, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
           raw_body: bytes, body: Any) -> RecordedRequest:
        return cls(method, path, _join(query), _join(headers, lower=True), body, raw_body)


def _join(items: Mapping[str, str], lower: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in items.items():
        name = key.lower() if lower else key
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out
