"""The formats clients speak: which one a request is in, and the way into and
out of the pivot (OpenAI chat) for it."""
from __future__ import annotations

from typing import Any

from .providers.anthropic import AnthropicEncoder, error_from_openai, request_to_openai, response_from_openai
from .providers.base import Json, error_type, openai_error
from .sse import DONE, data_event

#: what a request is, by the end of the path the client called (after the route's prefix)
KINDS = (("/chat/completions", "openai", "chat"), ("/embeddings", "openai", "embeddings"),
         ("/messages", "anthropic", "chat"), ("/models", "openai", "models"))


def request_kind(path: str, method: str) -> tuple[str, str] | None:
    """(client format, kind) of an AI request, or None for any other path (sent as it is)."""
    path = path.rstrip("/")
    for suffix, client, kind in KINDS:
        if path.endswith(suffix):
            if kind == "models":
                return (client, kind) if method == "GET" else None
            return (client, kind) if method == "POST" else None
    return None


class OpenAIEncoder:
    """The pivot's chunks, as OpenAI's stream; the usage chunk only if the client asked for it."""

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage

    def encode(self, chunks: list[Json]) -> bytes:
        out = []
        for chunk in chunks:
            if not chunk.get("choices") and "usage" in chunk and not self.include_usage:
                continue
            out.append(data_event(chunk))
        return b"".join(out)

    def finish(self) -> bytes:
        return DONE


class OpenAIClient:
    name = "openai"
    wire = "openai"
    content_type = "application/json"

    def to_pivot(self, body: Json) -> Json:
        return body

    def from_pivot(self, body: Json, model: str) -> Json:
        return body

    def encoder(self, request: Json, model: str) -> OpenAIEncoder:
        return OpenAIEncoder(bool((request.get("stream_options") or {}).get("include_usage")))

    def error(self, status: int, body: Json) -> Json:
        return body

    def message(self, status: int, message: str) -> Json:
        return openai_error(message, error_type(status), code="model_not_found" if "model" in message else None)


class AnthropicClient:
    name = "anthropic"
    wire = "anthropic"
    content_type = "application/json"

    def to_pivot(self, body: Json) -> Json:
        return request_to_openai(body)

    def from_pivot(self, body: Json, model: str) -> Json:
        return response_from_openai(body, model)

    def encoder(self, request: Json, model: str) -> AnthropicEncoder:
        return AnthropicEncoder(model)

    def error(self, status: int, body: Json) -> Json:
        return error_from_openai(status, body)

    def message(self, status: int, message: str) -> Json:
        return error_from_openai(status, openai_error(message))


CLIENTS: dict[str, Any] = {"openai": OpenAIClient(), "anthropic": AnthropicClient()}
