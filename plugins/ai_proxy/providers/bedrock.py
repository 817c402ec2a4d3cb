"""Amazon Bedrock's Converse API as a provider behind an OpenAI client.

| OpenAI chat | Bedrock Converse |
|---|---|
| ``system``/``developer`` messages | ``system[{text}]`` |
| ``user``/``assistant`` messages | ``messages[{role, content[]}]`` (consecutive turns of one role merged) |
| text | ``{text}`` |
| ``image_url`` data URL (png, jpeg, gif, webp) | ``{image{format, source{bytes}}}`` (``bytes`` is base64 in the JSON API) |
| ``image_url`` ``s3://`` URL | ``{image{format, source{s3Location{uri}}}}`` (format from the extension) |
| ``image_url`` other URL | ``{text: "[image: <url>]"}``: Converse cannot fetch a URL |
| ``assistant.tool_calls`` | ``{toolUse{toolUseId, name, input}}`` (ids kept) |
| ``role: tool`` messages | ``{toolResult{toolUseId, content[{json}]}}`` (``{text}`` when not a JSON object) in a ``user`` turn |
| ``max_tokens`` / ``max_completion_tokens``, ``temperature``, ``top_p``, ``stop`` | ``inferenceConfig{maxTokens, temperature, topP, stopSequences}`` |
| ``tools[].function`` | ``toolConfig.tools[{toolSpec{name, description, inputSchema{json}}}]`` |
| ``tool_choice`` auto / required / a function | ``toolChoice{auto}`` / ``{any}`` / ``{tool{name}}`` |
| ``tool_choice`` none | no ``toolChoice``, no tools (see below) |
| ``finish_reason`` stop / length / tool_calls / content_filter | ``stopReason`` end_turn, stop_sequence / max_tokens, model_context_window_exceeded / tool_use / guardrail_intervened, content_filtered |
| ``usage`` prompt / completion / total | ``usage{inputTokens, outputTokens, totalTokens}`` |
| stream chunks | ``application/vnd.amazon.eventstream`` frames: messageStart, contentBlockStart/Delta/Stop, messageStop, metadata |
| ``{"error": {...}}`` | ``{"message": ...}`` (status as sent); in a stream, an exception frame |

Bedrock refuses ``toolUse``/``toolResult`` blocks without a ``toolConfig``: a
conversation holding them keeps (or, when the request has none, gets minimal
``toolSpec``s for) the tools it used, even with tool_choice none, which then
means Bedrock's default (auto).

Endpoints: ``/model/<modelId>/converse`` and ``/converse-stream`` (the model id
URL-quoted, ``:`` kept, so ARNs fit). A target ``path`` replaces the path; when
streaming, its ``/converse`` becomes ``/converse-stream``. The host depends on
the region (``host_for``); requests are signed with SigV4 elsewhere.

Not mapped: documents and audio parts, ``n``, ``logprobs``, penalties, ``seed``,
``response_format``; reasoning blocks in answers are left out.
"""
from __future__ import annotations

import mimetypes
import time
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from botocore.eventstream import EventStreamBuffer, ParserError

from .base import Json, error_type, openai_error

DEFAULT_REGION = "us-east-1"

_STOP_TO_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                   "model_context_window_exceeded": "length", "tool_use": "tool_calls",
                   "guardrail_intervened": "content_filter", "content_filtered": "content_filter"}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}
#: Bedrock's stream exceptions -> (OpenAI error type, the status a client would have had)
_EXCEPTIONS = {"throttlingException": ("rate_limit_error", 429), "validationException": ("invalid_request_error", 400),
               "accessDeniedException": ("permission_error", 403),
               "modelTimeoutException": ("timeout_error", 408), "serviceUnavailableException": ("api_error", 503),
               "internalServerException": ("api_error", 500), "modelStreamErrorException": ("api_error", 502)}
_EMPTY_SCHEMA = {"type": "object", "properties": {}}


# -- request ------------------------------------------------------------------------------------
def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _image(url: str) -> Json:
    if url.startswith("data:") and ";base64," in url:
        media, _, data = url[5:].partition(";base64,")
        image_format = _IMAGE_FORMATS.get(media.lower())
        if image_format:
            return {"image": {"format": image_format, "source": {"bytes": data}}}
        return {"text": f"[image of unsupported type {media}]"}
    if url.startswith("s3://"):
        image_format = _IMAGE_FORMATS.get(mimetypes.guess_type(urlsplit(url).path)[0] or "", "png")
        return {"image": {"format": image_format, "source": {"s3Location": {"uri": url}}}}
    return {"text": f"[image: {url}]"}


def _user_blocks(content: Any) -> list[Json]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[Json] = []
    for part in content or ():
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            blocks.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            blocks.append(_image(image.get("url", "") if isinstance(image, dict) else str(image)))
    return blocks


def _loads(text: Any) -> Any:
    if not isinstance(text, (str, bytes)):
        return text
    try:
        return orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return text


def _append(messages: list[Json], role: str, blocks: list[Json]) -> None:
    """Converse wants user and assistant turns to alternate: consecutive ones merge."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def request_from_openai(request: Json) -> Json:
    system: list[Json] = []
    messages: list[Json] = []
    used: list[str] = []  # the tools the conversation already called
    for message in request.get("messages") or ():
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text(message.get("content"))
            if text:
                system.append({"text": text})
        elif role == "user":
            _append(messages, "user", _user_blocks(message.get("content")))
        elif role == "assistant":
            text = _text(message.get("content"))
            blocks: list[Json] = [{"text": text}] if text else []
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                args = _loads(function.get("arguments"))
                name = function.get("name") or ""
                used.append(name)
                blocks.append({"toolUse": {"toolUseId": call.get("id"), "name": name,
                                           "input": args if isinstance(args, dict) else {"value": args}}})
            _append(messages, "assistant", blocks)
        elif role == "tool":
            text = _text(message.get("content"))
            value = _loads(text)
            result = [{"json": value}] if isinstance(value, dict) else [{"text": text}]
            _append(messages, "user", [{"toolResult": {"toolUseId": message.get("tool_call_id"), "content": result}}])
    out: Json = {"messages": messages}
    if system:
        out["system"] = system
    config: Json = {}
    maximum = request.get("max_tokens") or request.get("max_completion_tokens")
    if maximum:
        config["maxTokens"] = maximum
    for key, name in (("temperature", "temperature"), ("top_p", "topP")):
        if request.get(key) is not None:
            config[name] = request[key]
    stop = request.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if config:
        out["inferenceConfig"] = config
    specs = [{"toolSpec": {"name": f.get("name"), "description": f.get("description") or f.get("name") or "",
                           "inputSchema": {"json": f.get("parameters") or _EMPTY_SCHEMA}}}
             for f in (t.get("function") or {} for t in request.get("tools") or () if t.get("type") == "function")]
    choice = request.get("tool_choice")
    tool_choice: Json | None = None
    if isinstance(choice, dict):
        tool_choice = {"tool": {"name": (choice.get("function") or {}).get("name")}}
    elif choice == "required":
        tool_choice = {"any": {}}
    elif choice == "auto":
        tool_choice = {"auto": {}}
    if choice == "none":
        specs = [s for s in specs if s["toolSpec"]["name"] in used]
    known = {s["toolSpec"]["name"] for s in specs}
    for name in dict.fromkeys(used):
        if name not in known:
            specs.append({"toolSpec": {"name": name, "description": name, "inputSchema": {"json": _EMPTY_SCHEMA}}})
    if specs:
        out["toolConfig"] = {"tools": specs}
        if tool_choice:
            out["toolConfig"]["toolChoice"] = tool_choice
    return out


# -- answer -------------------------------------------------------------------------------------
def _usage(usage: Json) -> Json:
    prompt, completion = usage.get("inputTokens", 0), usage.get("outputTokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": usage.get("totalTokens") or prompt + completion}


def response_to_openai(body: Json, model: str) -> Json:
    texts: list[str] = []
    calls: list[Json] = []
    for block in ((body.get("output") or {}).get("message") or {}).get("content") or ():
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            arguments = orjson.dumps(use.get("input") or {}).decode()
            calls.append({"id": use.get("toolUseId"), "type": "function",
                          "function": {"name": use.get("name"), "arguments": arguments}})
    message: Json = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return {"id": "", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": _STOP_TO_FINISH.get(body.get("stopReason") or "", "stop")}],
            "usage": _usage(body.get("usage") or {})}


def _header(headers: dict[str, Any], name: str) -> str:
    value = headers.get(name)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


class BedrockStream:
    """AWS event-stream frames, decoded as they arrive, as OpenAI chunks."""

    def __init__(self, model: str) -> None:
        self.buffer = EventStreamBuffer()
        self.model, self.created = model, int(time.time())
        self.broken = False
        self.tools = -1  # index of the current tool call among the answer's tool calls
        self.blocks: dict[int, int] = {}  # Bedrock content block index -> tool call index

    def _chunk(self, delta: Json | None, finish: str | None = None, usage: Json | None = None) -> Json:
        chunk: Json = {"id": "", "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                       "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            chunk["usage"] = usage
        return chunk

    def feed(self, data: bytes) -> list[Json]:
        if self.broken:
            return []
        self.buffer.add_data(data)
        out: list[Json] = []
        try:
            for message in self.buffer:
                out.extend(self._message(message.headers, message.payload))
        except ParserError as exc:  # a bad checksum or length: the rest cannot be framed
            self.broken = True
            out.append(openai_error(f"malformed event stream from Bedrock: {type(exc).__name__}", "api_error"))
        return out

    def close(self) -> list[Json]:
        return []

    def _message(self, headers: dict[str, Any], payload: bytes) -> list[Json]:
        kind = _header(headers, ":message-type") or "event"
        try:
            event = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            event = {}
        if not isinstance(event, dict):
            event = {}
        if kind == "exception":
            name = _header(headers, ":exception-type")
            error_kind = _EXCEPTIONS.get(name, ("api_error", 500))[0]
            return [openai_error(event.get("message") or event.get("Message") or name, error_kind, name or None)]
        if kind == "error":
            code = _header(headers, ":error-code")
            return [openai_error(_header(headers, ":error-message") or code, "api_error", code or None)]
        name = _header(headers, ":event-type")
        if name == "messageStart":
            return [self._chunk({"role": event.get("role") or "assistant", "content": ""})]
        if name == "contentBlockStart":
            use = (event.get("start") or {}).get("toolUse")
            if not use:
                return []
            self.tools += 1
            self.blocks[event.get("contentBlockIndex", 0)] = self.tools
            return [self._chunk({"tool_calls": [{"index": self.tools, "id": use.get("toolUseId"), "type": "function",
                                                 "function": {"name": use.get("name"), "arguments": ""}}]})]
        if name == "contentBlockDelta":
            delta = event.get("delta") or {}
            if delta.get("text"):
                return [self._chunk({"content": delta["text"]})]
            use = delta.get("toolUse")
            if use and use.get("input"):
                index = self.blocks.get(event.get("contentBlockIndex", 0), self.tools)
                return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": use["input"]}}]})]
            return []
        if name == "messageStop":
            return [self._chunk({}, _STOP_TO_FINISH.get(event.get("stopReason") or "", "stop"))]
        if name == "metadata" and event.get("usage"):
            return [self._chunk(None, usage=_usage(event["usage"]))]
        return []  # contentBlockStop, reasoning deltas, metrics-only metadata


# -- the provider -------------------------------------------------------------------------------
def _error_status(status: int, message: str) -> tuple[int, str | None]:
    """A status an OpenAI client reads right, and a code, from Bedrock's status and message."""
    lowered = message.lower()
    if status == 403 and ("security token" in lowered or "signature" in lowered or "credential" in lowered):
        return 401, "invalid_api_key"
    if status == 429:
        return 429, "rate_limit_exceeded"
    if status == 400 and ("too long" in lowered or "too many input tokens" in lowered or "context window" in lowered):
        return 400, "context_length_exceeded"
    if status == 424:  # ModelErrorException: the model failed, not the request
        return 502, None
    return status, None


class Bedrock:
    name = "bedrock"
    wire = "bedrock"
    embeddings = False
    host: str | None = None  # bedrock-runtime.<region>.amazonaws.com: see host_for

    def host_for(self, target: Any) -> str:
        region = (target.credentials or {}).get("aws_region") or DEFAULT_REGION
        return f"bedrock-runtime.{region}.amazonaws.com"

    def endpoint(self, kind: str, model: str, stream: bool, target: Any) -> tuple[str, str]:
        if target.path:
            path = target.path
            if stream and path.endswith("/converse"):
                path += "-stream"
            return path, ""
        return f"/model/{quote(model, safe=':')}/{'converse-stream' if stream else 'converse'}", ""

    def request_headers(self, target: Any) -> list[tuple[str, str]]:
        return []

    def encode_request(self, request: Json, model: str, stream: bool) -> Json:
        return request_from_openai(request)  # the model and streaming are in the path

    def decode_response(self, body: Json, model: str) -> Json:
        return response_to_openai(body, model)

    def stream_decoder(self, model: str) -> BedrockStream:
        return BedrockStream(model)

    def decode_error(self, status: int, body: bytes) -> tuple[int, Json]:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        message = None
        if isinstance(parsed, dict):
            message = parsed.get("message") or parsed.get("Message")
        if not isinstance(message, str):
            message = body.decode("utf-8", "replace")[:500] or f"status {status}"
        status, code = _error_status(status, message)
        return status, openai_error(message, error_type(status), code)
