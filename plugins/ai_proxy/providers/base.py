"""What a provider module provides: its wire format, endpoints and the mapping
between its requests and answers and OpenAI's chat format.

OpenAI's chat completion format is the pivot: a client's request is turned
into it (when the client speaks another format), then into the chosen
provider's; the answer goes back the same way, event by event for streams.
A provider module therefore maps one format to OpenAI's and back, and the
gateway composes them. ``openai.py`` is the identity; ``anthropic.py`` has
both directions (Anthropic is a client format too).
"""
from __future__ import annotations

from typing import Any, Protocol

#: an OpenAI chat completion request, answer or stream chunk (a JSON object)
Json = dict[str, Any]


class StreamDecoder(Protocol):
    """Turns a provider's streamed answer into OpenAI ``chat.completion.chunk`` objects."""

    def feed(self, data: bytes) -> list[Json]:
        """The chunks the bytes received complete (possibly none)."""
        ...

    def close(self) -> list[Json]:
        """Chunks still held when the stream ended."""
        ...


class Provider(Protocol):
    #: the value of ``target.provider``
    name: str
    #: the format it speaks on the wire: "openai", "anthropic", "gemini", "bedrock"
    wire: str
    #: it serves OpenAI's embeddings endpoint
    embeddings: bool
    #: where the target is when it names only its provider (and the default scheme)
    host: str | None

    def endpoint(self, kind: str, model: str, stream: bool, target: Any) -> tuple[str, str]:
        """(path, query) for ``kind`` "chat" or "embeddings" on ``target``."""
        ...

    def request_headers(self, target: Any) -> list[tuple[str, str]]:
        """Headers the provider needs (a version header), unless the target sets them."""
        ...

    def encode_request(self, request: Json, model: str, stream: bool) -> Json:
        """An OpenAI chat request as this provider's request body."""
        ...

    def decode_response(self, body: Json, model: str) -> Json:
        """This provider's answer as an OpenAI chat completion."""
        ...

    def stream_decoder(self, model: str) -> StreamDecoder:
        ...

    def decode_error(self, status: int, body: bytes) -> tuple[int, Json]:
        """This provider's error as (status, OpenAI error body)."""
        ...


def openai_error(message: str, kind: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> Json:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


#: OpenAI's error types by status, for errors from providers that have other names
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 408: "timeout_error", 413: "invalid_request_error",
               422: "invalid_request_error", 429: "rate_limit_error"}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
