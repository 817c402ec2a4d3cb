"""OpenAI, and every server that speaks its API: Mistral, vLLM, Ollama, LiteLLM
(``openai-compatible``). The pivot format itself, so requests and answers map
to themselves; what is left is where to send them and how to read a stream.

| OpenAI | here |
|---|---|
| ``POST /v1/chat/completions`` | chat (a target's ``path`` replaces it) |
| ``POST /v1/embeddings`` | embeddings |
| ``data: {chunk}`` ... ``data: [DONE]`` | stream |
| ``{"error": {"message", "type", "param", "code"}}`` | errors, as they are |
"""
from __future__ import annotations

from typing import Any

import orjson

from ..sse import SseParser
from .base import Json, error_type, openai_error


class OpenAIStream:
    """OpenAI's own stream: each ``data:`` line is a chunk."""

    def __init__(self) -> None:
        self.parser = SseParser()

    def feed(self, data: bytes) -> list[Json]:
        return _chunks(self.parser.feed(data))

    def close(self) -> list[Json]:
        return _chunks(self.parser.close())


def _chunks(events: list[tuple[str | None, bytes]]) -> list[Json]:
    out = []
    for _, data in events:
        if data and data != b"[DONE]":
            try:
                out.append(orjson.loads(data))
            except orjson.JSONDecodeError:
                continue
    return out


class OpenAI:
    name = "openai"
    wire = "openai"
    embeddings = True
    host: str | None = "api.openai.com"
    chat_path = "/v1/chat/completions"
    embeddings_path = "/v1/embeddings"

    def endpoint(self, kind: str, model: str, stream: bool, target: Any) -> tuple[str, str]:
        if kind == "chat":
            return target.path or self.chat_path, ""
        return self.embeddings_path, ""

    def request_headers(self, target: Any) -> list[tuple[str, str]]:
        return []

    def encode_request(self, request: Json, model: str, stream: bool) -> Json:
        out = dict(request)
        out["model"] = model
        if stream:
            out["stream"] = True
            # the gateway counts tokens: ask for the usage chunk (the client's choice is kept apart)
            out["stream_options"] = {**(request.get("stream_options") or {}), "include_usage": True}
        return out

    def decode_response(self, body: Json, model: str) -> Json:
        return body

    def stream_decoder(self, model: str) -> OpenAIStream:
        return OpenAIStream()

    def decode_error(self, status: int, body: bytes) -> tuple[int, Json]:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            return status, parsed
        return status, openai_error(body.decode("utf-8", "replace")[:500] or f"status {status}", error_type(status))


class Mistral(OpenAI):
    name = "mistral"
    host = "api.mistral.ai"


class OpenAICompatible(OpenAI):
    """vLLM, Ollama, LiteLLM, any OpenAI-shaped server: it has no public endpoint."""

    name = "openai-compatible"
    host = None
