"""How the mock behaves: process-wide settings and their per-request header overrides.

One dataclass serves both: the process settings are a ``Behaviour`` (constructor or CLI
options, changeable at run time), and each request gets a copy with its ``x-mock-*``
headers applied. Tests of a gateway can so make one request fail, hang or stream slowly
without restarting anything. ``HEADERS`` is the single list of the control headers; the
documentation (docs/mock-llm.md) is checked against it by a test.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "text-embedding-3-small",
    "claude-3-5-sonnet-20241022",
    "claude-3-5-haiku-20241022",
    "gemini-1.5-flash",
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
)


class ControlError(ValueError):
    """A control header or setting with a value the mock cannot use (answered with a 400)."""


@dataclass
class Behaviour:
    """Everything that can be tuned; ``None`` means "off" or "derive it from the request"."""

    latency_ms: float = 0.0            # added before the first byte of any answer
    status: int | None = None          # answer this error status in the provider's shape
    retry_after: str | None = None     # Retry-After value (a 429 gets "1" when unset)
    error_message: str | None = None   # message of the error answered for ``status``
    hang: bool = False                 # never answer (until the client gives up)
    reset: bool = False                # reset the connection before answering anything
    hang_after_chunks: int | None = None   # stream N content chunks, then stall forever
    reset_after_chunks: int | None = None  # stream N content chunks, then reset the connection
    stream_error_after_chunks: int | None = None  # stream N content chunks, then an in-stream error
    chunks: int | None = None          # content chunks of a streamed answer (None: one per word)
    chunk_delay_ms: float = 0.0        # pause between two content chunks
    words: int | None = None           # answer N lorem words instead of echoing the prompt
    reply: str | None = None           # answer exactly this text
    tool: str | None = None            # answer a call of this tool (when the request offers tools)
    tool_args: dict[str, Any] | None = None  # arguments of that tool call (else from its schema)
    api_key: str | None = None         # when set, requests must carry it (else 401)
    models: tuple[str, ...] = DEFAULT_MODELS  # what the model lists name
    embedding_dimensions: int = 16     # vector length when the request sets no ``dimensions``

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Reject values that would make the mock misbehave in ways no test asked for."""
        for name in ("latency_ms", "chunk_delay_ms"):
            if getattr(self, name) < 0:
                raise ControlError(f"{name} must be >= 0")
        for name in ("hang_after_chunks", "reset_after_chunks", "stream_error_after_chunks", "words"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ControlError(f"{name} must be >= 0")
        if self.chunks is not None and self.chunks < 1:
            raise ControlError("chunks must be >= 1")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ControlError("status must be between 400 and 599")
        if self.embedding_dimensions < 1:
            raise ControlError("embedding_dimensions must be >= 1")
        if self.tool_args is not None and not isinstance(self.tool_args, dict):
            raise ControlError("tool_args must be a JSON object")
        self.models = tuple(self.models)

    def update(self, **changes: Any) -> None:
        """Change settings in place (validated as a whole; nothing changes on an error)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ControlError(f"unknown setting(s): {', '.join(unknown)}")
        candidate = dataclasses.replace(self, **changes)
        for name in changes:
            setattr(self, name, getattr(candidate, name))

    def for_request(self, headers: Mapping[str, str]) -> Behaviour:
        """A copy with the request's ``x-mock-*`` headers applied."""
        changes: dict[str, Any] = {}
        for header, (name, parse) in HEADERS.items():
            raw = headers.get(header)
            if raw is None:
                continue
            try:
                changes[name] = parse(raw.strip())
            except (ValueError, orjson.JSONDecodeError) as exc:
                raise ControlError(f"{header}: {exc}") from None
        if not changes:
            return dataclasses.replace(self)
        try:
            return dataclasses.replace(self, **changes)
        except ControlError as exc:
            raise ControlError(f"x-mock header: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"models": list(self.models)}


def _int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"expected an integer, got {raw!r}") from None


def _float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None


def _flag(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected 1 or 0, got {raw!r}")


def _object(raw: str) -> dict[str, Any]:
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


def _text(raw: str) -> str:
    return raw


#: control header -> (Behaviour field, parser). Keep docs/mock-llm.md in step.
HEADERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "x-mock-latency-ms": ("latency_ms", _float),
    "x-mock-status": ("status", _int),
    "x-mock-retry-after": ("retry_after", _text),
    "x-mock-error-message": ("error_message", _text),
    "x-mock-hang": ("hang", _flag),
    "x-mock-hang-after-chunks": ("hang_after_chunks", _int),
    "x-mock-reset": ("reset", _flag),
    "x-mock-reset-after-chunks": ("reset_after_chunks", _int),
    "x-mock-stream-error-after-chunks": ("stream_error_after_chunks", _int),
    "x-mock-chunks": ("chunks", _int),
    "x-mock-chunk-delay-ms": ("chunk_delay_ms", _float),
    "x-mock-words": ("words", _int),
    "x-mock-reply": ("reply", _text),
    "x-mock-tool": ("tool", _text),
    "x-mock-tool-args": ("tool_args", _object),
}

#: settings without a header (a request must not choose the key it is checked against)
PROCESS_ONLY = ("api_key", "models", "embedding_dimensions")
