"""Anthropic's Messages API, both ways: as a provider behind an OpenAI client,
and as the format of a client (an Anthropic SDK) in front of any provider.

| OpenAI chat | Anthropic messages |
|---|---|
| ``system``/``developer`` messages | ``system`` |
| ``user``/``assistant`` messages (text, ``image_url`` as URL or data URL) | ``messages`` (``text``, ``image`` with a ``url`` or ``base64`` source) |
| ``assistant.tool_calls`` | ``tool_use`` blocks (ids kept) |
| ``role: tool`` messages | ``tool_result`` blocks in a ``user`` message |
| ``max_tokens`` / ``max_completion_tokens`` | ``max_tokens`` (required: 4096 when absent) |
| ``temperature``, ``top_p``, ``stop`` | ``temperature``, ``top_p``, ``stop_sequences`` |
| ``tools[].function`` | ``tools[]`` (``input_schema``) |
| ``tool_choice`` auto / none / required / a function | ``auto`` / ``none`` / ``any`` / ``tool`` |
| ``finish_reason`` stop / length / tool_calls | ``stop_reason`` end_turn, stop_sequence / max_tokens / tool_use |
| ``usage.prompt_tokens`` / ``completion_tokens`` | ``usage.input_tokens`` / ``output_tokens`` |
| stream chunks | ``message_start``, ``content_block_*``, ``message_delta``, ``message_stop`` |
| ``{"error": {...}}`` | ``{"type": "error", "error": {"type", "message"}}`` |
"""
from __future__ import annotations

import time
from typing import Any

import orjson

from ..sse import SseParser, named_event
from .base import Json, error_type, openai_error

VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

_STOP_TO_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                   "pause_turn": "stop", "refusal": "content_filter"}
_FINISH_TO_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                   "function_call": "tool_use", "content_filter": "refusal"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


# -- OpenAI -> Anthropic (a provider behind an OpenAI client) ----------------------------------
def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _image(url: str) -> Json:
    if url.startswith("data:") and ";base64," in url:
        media, _, data = url[5:].partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _user_blocks(content: Any) -> Any:
    if isinstance(content, str):
        return content
    blocks = []
    for part in content or ():
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            blocks.append(_image(image.get("url", "") if isinstance(image, dict) else str(image)))
    return blocks


def _arguments(text: Any) -> Any:
    if isinstance(text, dict):
        return text
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"value": value}


def _append(messages: list[Json], role: str, blocks: Any) -> None:
    """Anthropic wants user and assistant turns to alternate: consecutive ones merge."""
    if messages and messages[-1]["role"] == role:
        previous = messages[-1]["content"]
        if isinstance(previous, str):
            previous = [{"type": "text", "text": previous}]
        if isinstance(blocks, str):
            blocks = [{"type": "text", "text": blocks}]
        messages[-1]["content"] = previous + blocks
    else:
        messages.append({"role": role, "content": blocks})


def request_from_openai(request: Json, model: str, stream: bool) -> Json:
    system: list[str] = []
    messages: list[Json] = []
    for message in request.get("messages") or ():
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text(message.get("content")))
        elif role == "user":
            _append(messages, "user", _user_blocks(message.get("content")))
        elif role == "assistant":
            blocks: list[Json] = []
            text = _text(message.get("content"))
            if text:
                blocks.append({"type": "text", "text": text})
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                               "input": _arguments(function.get("arguments"))})
            _append(messages, "assistant", blocks or [{"type": "text", "text": ""}])
        elif role == "tool":
            _append(messages, "user", [{"type": "tool_result", "tool_use_id": message.get("tool_call_id"),
                                        "content": _text(message.get("content"))}])
    out: Json = {"model": model, "messages": messages,
                 "max_tokens": request.get("max_tokens") or request.get("max_completion_tokens") or DEFAULT_MAX_TOKENS}
    if system:
        out["system"] = "\n\n".join(system)
    for key in ("temperature", "top_p"):
        if request.get(key) is not None:
            out[key] = request[key]
    stop = request.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if request.get("tools"):
        out["tools"] = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
                         "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}}}
                        for t in request["tools"] if t.get("type") == "function"]
    choice = request.get("tool_choice")
    if choice is not None:
        if isinstance(choice, dict):
            out["tool_choice"] = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
        else:
            out["tool_choice"] = {"type": {"auto": "auto", "none": "none", "required": "any"}.get(choice, "auto")}
        if request.get("parallel_tool_calls") is False and out["tool_choice"]["type"] != "none":
            out["tool_choice"]["disable_parallel_tool_use"] = True
    if request.get("user"):
        out["metadata"] = {"user_id": str(request["user"])}
    if stream:
        out["stream"] = True
    return out


def response_to_openai(body: Json, model: str) -> Json:
    texts, calls = [], []
    for block in body.get("content") or ():
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    message: Json = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    usage = body.get("usage") or {}
    prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return {"id": body.get("id", ""), "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model") or model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": _STOP_TO_FINISH.get(body.get("stop_reason") or "", "stop")}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


class AnthropicStream:
    """Anthropic's named events as OpenAI chunks, one event at a time."""

    def __init__(self, model: str) -> None:
        self.parser = SseParser()
        self.id, self.model = "", model
        self.prompt = self.completion = 0
        self.tools = -1  # index of the current tool call among the answer's tool calls
        self.blocks: dict[int, str] = {}  # Anthropic block index -> "text" | "tool"

    def _chunk(self, delta: Json | None, finish: str | None = None, usage: Json | None = None) -> Json:
        chunk: Json = {"id": self.id, "object": "chat.completion.chunk", "created": int(time.time()),
                       "model": self.model,
                       "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            chunk["usage"] = usage
        return chunk

    def feed(self, data: bytes) -> list[Json]:
        return self._events(self.parser.feed(data))

    def close(self) -> list[Json]:
        return self._events(self.parser.close())

    def _events(self, events: list[tuple[str | None, bytes]]) -> list[Json]:
        out: list[Json] = []
        for name, data in events:
            try:
                event = orjson.loads(data) if data else {}
            except orjson.JSONDecodeError:
                continue
            kind = event.get("type") or name
            if kind == "message_start":
                message = event.get("message") or {}
                self.id, self.model = message.get("id", ""), message.get("model") or self.model
                self.prompt = (message.get("usage") or {}).get("input_tokens", 0)
                out.append(self._chunk({"role": "assistant", "content": ""}))
            elif kind == "content_block_start":
                block = event.get("content_block") or {}
                if block.get("type") == "tool_use":
                    self.tools += 1
                    self.blocks[event.get("index", 0)] = "tool"
                    out.append(self._chunk({"tool_calls": [{"index": self.tools, "id": block.get("id"), "type": "function",
                                                            "function": {"name": block.get("name"), "arguments": ""}}]}))
                else:
                    self.blocks[event.get("index", 0)] = "text"
            elif kind == "content_block_delta":
                delta = event.get("delta") or {}
                if delta.get("type") == "text_delta":
                    out.append(self._chunk({"content": delta.get("text", "")}))
                elif delta.get("type") == "input_json_delta":
                    out.append(self._chunk({"tool_calls": [{"index": self.tools,
                                                            "function": {"arguments": delta.get("partial_json", "")}}]}))
            elif kind == "message_delta":
                self.completion = (event.get("usage") or {}).get("output_tokens", self.completion)
                reason = (event.get("delta") or {}).get("stop_reason")
                if reason:
                    out.append(self._chunk({}, _STOP_TO_FINISH.get(reason, "stop")))
            elif kind == "message_stop":
                total = self.prompt + self.completion
                out.append(self._chunk(None, usage={"prompt_tokens": self.prompt, "completion_tokens": self.completion,
                                                    "total_tokens": total}))
            elif kind == "error":
                error = event.get("error") or {}
                out.append({"error": {"message": error.get("message", ""), "type": error.get("type", "api_error"),
                                      "param": None, "code": None}})
        return out


class Anthropic:
    name = "anthropic"
    wire = "anthropic"
    embeddings = False
    host: str | None = "api.anthropic.com"

    def endpoint(self, kind: str, model: str, stream: bool, target: Any) -> tuple[str, str]:
        return target.path or "/v1/messages", ""

    def request_headers(self, target: Any) -> list[tuple[str, str]]:
        return [("anthropic-version", VERSION)]

    def encode_request(self, request: Json, model: str, stream: bool) -> Json:
        return request_from_openai(request, model, stream)

    def decode_response(self, body: Json, model: str) -> Json:
        return response_to_openai(body, model)

    def stream_decoder(self, model: str) -> AnthropicStream:
        return AnthropicStream(model)

    def decode_error(self, status: int, body: bytes) -> tuple[int, Json]:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if status == 529:
            status = 503  # "overloaded": the status every OpenAI client knows for it
        if isinstance(error, dict):
            return status, openai_error(error.get("message", ""), error_type(status))
        return status, openai_error(body.decode("utf-8", "replace")[:500] or f"status {status}", error_type(status))


# -- Anthropic -> OpenAI (an Anthropic client in front of any provider) -----------------------
def _openai_parts(blocks: Any) -> Any:
    if isinstance(blocks, str):
        return blocks
    parts = []
    for block in blocks or ():
        if block.get("type") == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif block.get("type") == "image":
            source = block.get("source") or {}
            url = (f"data:{source.get('media_type')};base64,{source.get('data')}" if source.get("type") == "base64"
                   else source.get("url", ""))
            parts.append({"type": "image_url", "image_url": {"url": url}})
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def request_to_openai(body: Json) -> Json:
    messages: list[Json] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _text(system) if isinstance(system, list) else system})
    for message in body.get("messages") or ():
        content = message.get("content")
        blocks = content if isinstance(content, list) else None
        if message.get("role") == "assistant":
            out: Json = {"role": "assistant", "content": _text(content) if blocks is not None else content}
            calls = [{"id": b.get("id"), "type": "function",
                      "function": {"name": b.get("name"), "arguments": orjson.dumps(b.get("input") or {}).decode()}}
                     for b in blocks or () if b.get("type") == "tool_use"]
            if calls:
                out["tool_calls"] = calls
            messages.append(out)
            continue
        results = [b for b in blocks or () if b.get("type") == "tool_result"]
        for result in results:
            inner = result.get("content")
            messages.append({"role": "tool", "tool_call_id": result.get("tool_use_id"),
                             "content": _text(inner) if isinstance(inner, list) else (inner or "")})
        rest = [b for b in blocks or () if b.get("type") != "tool_result"] if blocks is not None else content
        if rest:
            messages.append({"role": "user", "content": _openai_parts(rest)})
    out = {"model": body.get("model"), "messages": messages, "max_tokens": body.get("max_tokens")}
    for key in ("temperature", "top_p", "stream"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    if body.get("tools"):
        out["tools"] = [{"type": "function", "function": {"name": t.get("name"), "description": t.get("description", ""),
                                                           "parameters": t.get("input_schema") or {}}}
                        for t in body["tools"]]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        out["tool_choice"] = ({"type": "function", "function": {"name": choice.get("name")}} if kind == "tool"
                              else {"auto": "auto", "any": "required", "none": "none"}.get(kind, "auto"))
        if choice.get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        out["user"] = user
    return out


def response_from_openai(body: Json, model: str) -> Json:
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[Json] = []
    if message.get("content"):
        content.append({"type": "text", "text": _text(message["content"])})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                        "input": _arguments(function.get("arguments"))})
    usage = body.get("usage") or {}
    return {"id": body.get("id") or "msg", "type": "message", "role": "assistant", "model": body.get("model") or model,
            "content": content, "stop_reason": _FINISH_TO_STOP.get(choice.get("finish_reason") or "stop", "end_turn"),
            "stop_sequence": None,
            "usage": {"input_tokens": usage.get("prompt_tokens", 0), "output_tokens": usage.get("completion_tokens", 0)}}


def error_from_openai(status: int, body: Json) -> Json:
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error" if status >= 500 else
                                                                   "invalid_request_error"),
                                       "message": error.get("message", "")}}


class AnthropicEncoder:
    """OpenAI chunks as Anthropic's stream of named events."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.index = -1
        self.open: str | None = None  # "text" or "tool"
        self.stop = "end_turn"
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self.tool_blocks: dict[int, int] = {}

    def _start(self, chunk: Json) -> bytes:
        self.started = True
        message = {"id": chunk.get("id") or "msg", "type": "message", "role": "assistant",
                   "model": chunk.get("model") or self.model, "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": dict(self.usage)}
        return named_event("message_start", {"type": "message_start", "message": message})

    def _close_block(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return named_event("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def encode(self, chunks: list[Json]) -> bytes:
        out: list[bytes] = []
        for chunk in chunks:
            if "error" in chunk and not chunk.get("choices"):
                out.append(named_event("error", error_from_openai(500, chunk)))
                continue
            if not self.started:
                out.append(self._start(chunk))
            usage = chunk.get("usage")
            if usage:
                self.usage = {"input_tokens": usage.get("prompt_tokens", 0),
                              "output_tokens": usage.get("completion_tokens", 0)}
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if text:
                    if self.open != "text":
                        out.append(self._close_block())
                        self.index += 1
                        self.open = "text"
                        out.append(named_event("content_block_start", {"type": "content_block_start", "index": self.index,
                                                                       "content_block": {"type": "text", "text": ""}}))
                    out.append(named_event("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                                   "delta": {"type": "text_delta", "text": text}}))
                for call in delta.get("tool_calls") or ():
                    function = call.get("function") or {}
                    if call.get("id") or call.get("index") not in self.tool_blocks:
                        out.append(self._close_block())
                        self.index += 1
                        self.open = "tool"
                        self.tool_blocks[call.get("index", 0)] = self.index
                        out.append(named_event("content_block_start", {
                            "type": "content_block_start", "index": self.index,
                            "content_block": {"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                                              "input": {}}}))
                    if function.get("arguments"):
                        out.append(named_event("content_block_delta", {
                            "type": "content_block_delta", "index": self.tool_blocks[call.get("index", 0)],
                            "delta": {"type": "input_json_delta", "partial_json": function["arguments"]}}))
                if choice.get("finish_reason"):
                    self.stop = _FINISH_TO_STOP.get(choice["finish_reason"], "end_turn")
        return b"".join(out)

    def finish(self) -> bytes:
        out = [] if self.started else [self._start({})]
        out.append(self._close_block())
        out.append(named_event("message_delta", {"type": "message_delta",
                                                 "delta": {"stop_reason": self.stop, "stop_sequence": None},
                                                 "usage": {"output_tokens": self.usage["output_tokens"]}}))
        out.append(named_event("message_stop", {"type": "message_stop"}))
        return b"".join(out)
