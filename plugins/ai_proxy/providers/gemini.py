"""Google's Gemini API (``generateContent``) as a provider behind an OpenAI client.

| OpenAI chat | Gemini |
|---|---|
| ``system``/``developer`` messages | ``systemInstruction.parts[].text`` |
| ``user``/``assistant`` messages | ``contents[]`` with role ``user``/``model`` (consecutive turns of one role merged) |
| text, ``image_url`` data URL / other URL | ``text``, ``inlineData{mimeType, data}`` / ``fileData{fileUri, mimeType}`` (type guessed from the extension) |
| ``input_audio``, ``file`` with ``file_data`` | ``inlineData`` |
| ``assistant.tool_calls`` | ``functionCall{name, args}`` parts |
| ``role: tool`` messages | ``functionResponse{name, response}`` parts in a ``user`` turn (name from the call with that id; non-object content as ``{"output": ...}``) |
| ``max_tokens`` / ``max_completion_tokens``, ``temperature``, ``top_p``, ``stop`` | ``generationConfig.maxOutputTokens``, ``temperature``, ``topP``, ``stopSequences`` |
| ``presence_penalty``, ``frequency_penalty``, ``seed`` | ``generationConfig.presencePenalty``, ``frequencyPenalty``, ``seed`` |
| ``response_format`` json_object / json_schema | ``responseMimeType: application/json`` (+ ``responseSchema``) |
| ``tools[].function`` | ``tools[{functionDeclarations[{name, description, parameters}]}]`` (schema keys Gemini rejects dropped) |
| ``tool_choice`` auto / none / required / a function | ``toolConfig.functionCallingConfig.mode`` AUTO / NONE / ANY / ANY + ``allowedFunctionNames`` |
| ``tool_calls[].id`` | Gemini's ``functionCall.id`` when it sends one, else ``call_<n>`` (n counts the answer's calls) |
| ``tool_calls[].extra_content.google.thought_signature`` | ``thoughtSignature`` of the ``functionCall`` part (kept both ways, as Google's own OpenAI layer does) |
| ``finish_reason`` stop / length / content_filter / tool_calls | ``finishReason`` STOP / MAX_TOKENS / SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII / any answer with function calls |
| ``usage`` prompt / completion / total | ``usageMetadata`` promptTokenCount / candidatesTokenCount (+ thoughtsTokenCount) / totalTokenCount |
| stream chunks | ``?alt=sse`` events, each a ``GenerateContentResponse`` |
| ``{"error": {...}}`` | ``{"error": {"code", "message", "status"}}`` |

Endpoints: ``/v1beta/models/<model>:generateContent`` and
``:streamGenerateContent?alt=sse``. A target ``path`` replaces the path (Vertex
AI's ``.../publishers/google/models/<model>:generateContent`` takes the same
body); when streaming, its ``:generateContent`` becomes ``:streamGenerateContent``.

Not mapped: ``n``, ``logprobs``, the legacy ``functions``/``function_call``,
schema ``$ref``/``$defs`` (inline them); thought parts in answers are left out. ``fileData`` takes the URIs Gemini can
read (its Files API, Cloud Storage for Vertex), not arbitrary web URLs.
"""
from __future__ import annotations

import mimetypes
import time
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from ..sse import SseParser
from .base import Json, error_type, openai_error

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
           "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
           "IMAGE_SAFETY": "content_filter"}
_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
#: Google's canonical error codes -> the HTTP status an OpenAI client expects
_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401,
           "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "ABORTED": 409,
           "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "INTERNAL": 500, "UNKNOWN": 500, "DATA_LOSS": 500,
           "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}
#: the keys of Gemini's (OpenAPI subset) ``Schema``: others (``additionalProperties``, ``$schema``) are a 400
_SCHEMA_KEYS = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
                "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
                "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"}


# -- request ------------------------------------------------------------------------------------
def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a ``data:...;base64,`` URL."""
    if url.startswith("data:") and ";base64," in url:
        media, _, data = url[5:].partition(";base64,")
        return media or "application/octet-stream", data
    return None


def _image(url: str) -> Json:
    inline = _data_url(url)
    if inline:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    guessed = mimetypes.guess_type(urlsplit(url).path)[0]
    return {"fileData": {"mimeType": guessed or "image/jpeg", "fileUri": url}}


def _user_parts(content: Any) -> list[Json]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[Json] = []
    for part in content or ():
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            parts.append(_image(image.get("url", "") if isinstance(image, dict) else str(image)))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            media = f"audio/{audio.get('format', 'wav')}"
            parts.append({"inlineData": {"mimeType": media, "data": audio.get("data", "")}})
        elif kind == "file":
            inline = _data_url((part.get("file") or {}).get("file_data") or "")
            if inline:
                parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
    return parts


def _loads(text: Any) -> Any:
    if not isinstance(text, (str, bytes)):
        return text
    try:
        return orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return text


def _schema(schema: Any) -> Any:
    """A JSON schema as Gemini's Schema: unknown keys dropped, ``["x", "null"]`` types as ``nullable``."""
    if isinstance(schema, list):
        return [_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: Json = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, list):
            kinds = [k for k in value if k != "null"]
            out["type"] = kinds[0] if kinds else "string"
            if "null" in value:
                out["nullable"] = True
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _schema(sub) for name, sub in value.items()}
        elif key == "const":
            out["enum"] = [value]
        elif key in _SCHEMA_KEYS:
            out[key] = _schema(value) if key in ("items", "anyOf") else value
    return out


def _append(contents: list[Json], role: str, parts: list[Json]) -> None:
    """One turn per role in a row: parallel function responses must share a turn."""
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def request_from_openai(request: Json) -> Json:
    system: list[str] = []
    contents: list[Json] = []
    names: dict[str, str] = {}  # tool call id -> function name, as the conversation goes
    for message in request.get("messages") or ():
        role = message.get("role")
        if role in ("system", "developer"):
            if _text(message.get("content")):
                system.append(_text(message.get("content")))
        elif role == "user":
            _append(contents, "user", _user_parts(message.get("content")))
        elif role == "assistant":
            text = _text(message.get("content"))
            parts: list[Json] = [{"text": text}] if text else []
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                names[call.get("id") or ""] = function.get("name") or ""
                args = _loads(function.get("arguments"))
                part: Json = {"functionCall": {"name": function.get("name"),
                                               "args": args if isinstance(args, dict) else {"value": args}}}
                signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
                if signature:
                    part["thoughtSignature"] = signature
                parts.append(part)
            _append(contents, "model", parts)
        elif role == "tool":
            value = _loads(_text(message.get("content")))
            name = names.get(message.get("tool_call_id") or "") or message.get("name") or "function"
            _append(contents, "user", [{"functionResponse": {
                "name": name, "response": value if isinstance(value, dict) else {"output": value}}}])
    out: Json = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config: Json = {}
    for key, name in (("temperature", "temperature"), ("top_p", "topP"), ("presence_penalty", "presencePenalty"),
                      ("frequency_penalty", "frequencyPenalty"), ("seed", "seed")):
        if request.get(key) is not None:
            config[name] = request[key]
    maximum = request.get("max_tokens") or request.get("max_completion_tokens")
    if maximum:
        config["maxOutputTokens"] = maximum
    stop = request.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = request.get("response_format") or {}
    if response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            config["responseSchema"] = _schema(schema)
    if config:
        out["generationConfig"] = config
    declarations = []
    for tool in request.get("tools") or ():
        if tool.get("type") != "function":
            continue
        function = tool.get("function") or {}
        declaration: Json = {"name": function.get("name"), "description": function.get("description", "")}
        parameters = function.get("parameters")
        if parameters and (parameters.get("properties") or parameters.get("type") != "object"):
            declaration["parameters"] = _schema(parameters)  # Gemini refuses an object without properties
        declarations.append(declaration)
    if declarations:
        out["tools"] = [{"functionDeclarations": declarations}]
    choice = request.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        out["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    elif choice in _CHOICE_MODES and declarations:
        out["toolConfig"] = {"functionCallingConfig": {"mode": _CHOICE_MODES[choice]}}
    return out


# -- answer -------------------------------------------------------------------------------------
def _tool_call(call: Json, part: Json, index: int) -> Json:
    out: Json = {"id": call.get("id") or f"call_{index}", "type": "function",
                 "function": {"name": call.get("name"), "arguments": orjson.dumps(call.get("args") or {}).decode()}}
    if part.get("thoughtSignature"):
        out["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return out


def _finish(reason: str | None, calls: bool) -> str:
    finish = _FINISH.get(reason or "STOP", "stop")
    return "tool_calls" if calls and finish == "stop" else finish


def _usage(metadata: Json) -> Json:
    prompt = metadata.get("promptTokenCount", 0)
    thoughts = metadata.get("thoughtsTokenCount", 0)
    completion = metadata.get("candidatesTokenCount", 0) + thoughts
    usage: Json = {"prompt_tokens": prompt, "completion_tokens": completion,
                   "total_tokens": metadata.get("totalTokenCount") or prompt + completion}
    if thoughts:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return usage


def response_to_openai(body: Json, model: str) -> Json:
    choices = []
    for position, candidate in enumerate(body.get("candidates") or ()):
        texts: list[str] = []
        calls: list[Json] = []
        for part in (candidate.get("content") or {}).get("parts") or ():
            if part.get("thought"):
                continue
            if "text" in part:
                texts.append(part["text"])
            elif "functionCall" in part:
                calls.append(_tool_call(part["functionCall"], part, len(calls)))
        message: Json = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
        if calls:
            message["tool_calls"] = calls
        choices.append({"index": candidate.get("index", position), "message": message, "logprobs": None,
                        "finish_reason": _finish(candidate.get("finishReason"), bool(calls))})
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason)
        choices.append({"index": 0, "message": {"role": "assistant", "content": ""}, "logprobs": None,
                        "finish_reason": "content_filter"})
    return {"id": body.get("responseId", ""), "object": "chat.completion", "created": int(time.time()),
            "model": body.get("modelVersion") or model, "choices": choices,
            "usage": _usage(body.get("usageMetadata") or {})}


class GeminiStream:
    """Gemini's ``alt=sse`` events, each a partial answer, as OpenAI chunks."""

    def __init__(self, model: str) -> None:
        self.parser = SseParser()
        self.id, self.model, self.created = "", model, int(time.time())
        self.started = self.finished = False
        self.calls: dict[int, int] = {}  # candidate index -> tool calls so far
        self.usage: Json | None = None

    def _chunk(self, delta: Json | None, index: int = 0, finish: str | None = None,
               usage: Json | None = None) -> Json:
        chunk: Json = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                       "choices": [] if delta is None else [{"index": index, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            chunk["usage"] = usage
        return chunk

    def feed(self, data: bytes) -> list[Json]:
        return self._events(self.parser.feed(data))

    def close(self) -> list[Json]:
        out = self._events(self.parser.close())
        if self.usage is not None and not self.finished:
            self.finished = True
            out.append(self._chunk(None, usage=self.usage))
        return out

    def _events(self, events: list[tuple[str | None, bytes]]) -> list[Json]:
        out: list[Json] = []
        for _, data in events:
            try:
                event = orjson.loads(data) if data else None
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, list):  # a JSON-array stream's element, or an error in one
                event = event[0] if event and isinstance(event[0], dict) else None
            if not isinstance(event, dict) or self.finished:
                continue
            if isinstance(event.get("error"), dict):
                error = event["error"]
                status = _STATUS.get(error.get("status") or "", error.get("code") or 500)
                out.append(openai_error(error.get("message", ""), error_type(status), error.get("status")))
                continue
            if not self.started:
                self.started = True
                self.id, self.model = event.get("responseId", ""), event.get("modelVersion") or self.model
                out.append(self._chunk({"role": "assistant", "content": ""}))
            if event.get("usageMetadata"):
                self.usage = _usage(event["usageMetadata"])
            finished = False
            candidates = event.get("candidates") or ()
            for position, candidate in enumerate(candidates):
                index = candidate.get("index", position)
                for part in (candidate.get("content") or {}).get("parts") or ():
                    if part.get("thought"):
                        continue
                    if part.get("text"):
                        out.append(self._chunk({"content": part["text"]}, index))
                    elif "functionCall" in part:
                        n = self.calls.get(index, 0)
                        self.calls[index] = n + 1
                        call = _tool_call(part["functionCall"], part, n)
                        out.append(self._chunk({"tool_calls": [{"index": n, **call}]}, index))
                if candidate.get("finishReason"):
                    finished = True
                    out.append(self._chunk({}, index, _finish(candidate["finishReason"], bool(self.calls.get(index)))))
            if not candidates and (event.get("promptFeedback") or {}).get("blockReason"):
                finished = True
                out.append(self._chunk({}, 0, "content_filter"))
            if finished and self.usage is not None:
                self.finished = True
                out.append(self._chunk(None, usage=self.usage))
        return out


# -- the provider -------------------------------------------------------------------------------
def _model_path(model: str) -> str:
    name = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
    return quote(name, safe="/")


class Gemini:
    name = "gemini"
    wire = "gemini"
    embeddings = False
    host: str | None = "generativelanguage.googleapis.com"

    def endpoint(self, kind: str, model: str, stream: bool, target: Any) -> tuple[str, str]:
        query = "alt=sse" if stream else ""
        if target.path:
            path = target.path
            if stream and path.endswith(":generateContent"):
                path = path[: -len(":generateContent")] + ":streamGenerateContent"
            return path, query
        method = "streamGenerateContent" if stream else "generateContent"
        return f"/v1beta/{_model_path(model)}:{method}", query

    def request_headers(self, target: Any) -> list[tuple[str, str]]:
        return []

    def encode_request(self, request: Json, model: str, stream: bool) -> Json:
        return request_from_openai(request)  # the model and streaming are in the path

    def decode_response(self, body: Json, model: str) -> Json:
        return response_to_openai(body, model)

    def stream_decoder(self, model: str) -> GeminiStream:
        return GeminiStream(model)

    def decode_error(self, status: int, body: bytes) -> tuple[int, Json]:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list) and parsed:  # streamGenerateContent without alt=sse wraps it in an array
            parsed = parsed[0]
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if not isinstance(error, dict):
            return status, openai_error(body.decode("utf-8", "replace")[:500] or f"status {status}", error_type(status))
        code, message = error.get("status") or "", error.get("message", "")
        reasons = {d.get("reason") for d in error.get("details") or () if isinstance(d, dict)}
        if "API_KEY_INVALID" in reasons or "API key not valid" in message:
            return 401, openai_error(message, "authentication_error", "invalid_api_key")
        status = _STATUS.get(code, status if status >= 400 else 500)
        return status, openai_error(message, error_type(status), code.lower() or None)
