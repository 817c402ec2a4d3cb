"""Google's Gemini API: ``models/{model}:generateContent`` and ``:streamGenerateContent``.

Streaming answers come in the two forms Google serves: server-sent events of
GenerateContentResponse objects with ``?alt=sse`` (what SDKs ask for), and one JSON array
written element by element without it. Both snake_case and camelCase request fields are
read, as the protobuf JSON mapping accepts both.
"""
from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from kong_py.mock_llm.content import Prompt, Reply, Tool, answer, new_id
from kong_py.mock_llm.wire import ApiError, Call, Provider, Stream, bearer, integer, json_response, stop_list

FINISH = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS", "tool": "STOP"}
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
          503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
ACTIONS = ("generateContent", "streamGenerateContent")


def error(exc: ApiError) -> web.Response:
    """``{"error": {"code", "message", "status"}}``, Google's API error shape."""
    status = STATUS.get(exc.status, "UNKNOWN")
    return json_response({"error": {"code": exc.status, "message": exc.message, "status": status}}, exc.status)


def keys(request: web.Request) -> list[str]:
    found = [v for v in (request.headers.get("x-goog-api-key"), request.query.get("key")) if v]
    return found + bearer(request)


def _get(data: Any, camel: str) -> Any:
    """``camel`` or its snake_case spelling from a dict (None when absent)."""
    if not isinstance(data, dict):
        return None
    if camel in data:
        return data[camel]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return data.get(snake)


def _texts(parts: Any) -> str:
    if not isinstance(parts, list):
        return ""
    return " ".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


def content_prompt(body: Any, model: str, stream: bool) -> Prompt:
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid JSON payload received.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise ApiError(400, "* GenerateContentRequest.contents: contents is not specified")
    generation = _get(body, "generationConfig") or {}
    prompt = Prompt(model=model, stream=stream,
                    max_tokens=integer(_get(generation, "maxOutputTokens"), "maxOutputTokens", 1),
                    stop=stop_list(_get(generation, "stopSequences"), "stopSequences"))
    system = _get(body, "systemInstruction")
    if system is not None:
        prompt.texts.append(_texts(system.get("parts")) if isinstance(system, dict) else "")
    for i, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts:
            raise ApiError(400, f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        prompt.texts.append(_texts(parts))
    last = contents[-1]
    responses = [_get(p, "functionResponse") for p in last["parts"] if _get(p, "functionResponse")]
    if responses:
        prompt.tool_result = " ".join(orjson.dumps(r.get("response")).decode() for r in responses)
    elif last.get("role", "user") == "user":
        prompt.last_user = _texts(last["parts"])
    for tool in body.get("tools") or []:
        for declaration in _get(tool, "functionDeclarations") or []:
            if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                schema = declaration.get("parameters") or _get(declaration, "parametersJsonSchema") or {}
                prompt.tools.append(Tool(declaration["name"], schema))
    config = _get(_get(body, "toolConfig"), "functionCallingConfig")
    mode = str(_get(config, "mode") or "AUTO").upper()
    allowed = _get(config, "allowedFunctionNames") or []
    if mode == "NONE":
        prompt.tool_choice = "none"
    elif mode == "ANY":
        prompt.tool_choice = allowed[0] if len(allowed) == 1 else "any"
    return prompt


def usage(reply: Reply, completion_tokens: int | None = None) -> dict[str, Any]:
    done = reply.completion_tokens if completion_tokens is None else completion_tokens
    return {"promptTokenCount": reply.prompt_tokens, "candidatesTokenCount": done,
            "totalTokenCount": reply.prompt_tokens + done}


def _parts(reply: Reply) -> list[dict[str, Any]]:
    if reply.tool_call is not None:
        return [{"functionCall": {"name": reply.tool_call.name, "args": reply.tool_call.arguments}}]
    return [{"text": reply.text}]


def response(reply: Reply, model: str, response_id: str) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": _parts(reply)},
                            "finishReason": FINISH[reply.finish], "index": 0}],
            "usageMetadata": usage(reply), "modelVersion": model, "responseId": response_id}


async def stream_response(call: Call, reply: Reply, model: str, as_sse: bool) -> web.StreamResponse:
    """Content chunks with running usage, then a last chunk with finishReason and the totals."""
    response_id = new_id("mock")
    first = True

    def item(data: dict[str, Any]) -> bytes:
        nonlocal first
        payload = orjson.dumps(data | {"modelVersion": model, "responseId": response_id})
        if as_sse:
            return b"data: " + payload + b"\r\n\r\n"
        prefix, first = (b"[" if first else b",\r\n"), False
        return prefix + payload

    def stream_error(message: str) -> bytes:
        payload = orjson.dumps({"error": {"code": 500, "message": message, "status": "INTERNAL"}})
        if as_sse:
            return b"data: " + payload + b"\r\n\r\n"
        return (b"[" if first else b",\r\n") + payload + b"]"

    stream = Stream(call, "text/event-stream" if as_sse else "application/json", error_frame=stream_error)
    await stream.open()
    done = 0
    pieces: list[tuple[list[dict[str, Any]], int]]
    if reply.tool_call is not None:
        pieces = [(_parts(reply), reply.completion_tokens)]
    else:
        pieces = [([{"text": piece}], len(piece.split())) for piece in reply.pieces()]
    for parts, tokens in pieces:
        done += tokens
        await stream.chunk(item({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
                                 "usageMetadata": usage(reply, done)}))
    await stream.end()
    await stream.frame(item({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
                                             "finishReason": FINISH[reply.finish], "index": 0}],
                             "usageMetadata": usage(reply)}))
    if not as_sse:
        await stream.frame(b"]")
    return await stream.finish()


async def generate(call: Call) -> web.StreamResponse:
    target = call.request.match_info["target"]
    model, _, action = target.rpartition(":")
    if not model or action not in ACTIONS:
        raise ApiError(404, f"models/{target} is not found for API version {call.request.path.split('/')[1]}")
    stream = action == "streamGenerateContent"
    prompt = content_prompt(call.body, model, stream)
    reply = answer(prompt, call.controls, "")
    if not stream:
        return json_response(response(reply, model, new_id("mock")))
    return await stream_response(call, reply, model, call.query.get("alt") == "sse")


async def models(call: Call) -> web.StreamResponse:
    return json_response({"models": [
        {"name": f"models/{m}", "displayName": m, "supportedGenerationMethods": list(ACTIONS)}
        for m in call.controls.models]})


ROUTES = (
    ("POST", "/v1beta/models/{target}", generate),
    ("POST", "/v1/models/{target}", generate),
    ("GET", "/v1beta/models", models),  # (GET /v1/models is OpenAI's)
    # Vertex AI's spelling of the same calls (OAuth tokens instead of API keys)
    ("POST", "/{version:v1|v1beta1}/projects/{project}/locations/{location}/publishers/google/models/{target}",
     generate),
)
# Google answers a wrong key with a 400, not a 401
GEMINI = Provider("gemini", error, keys, ROUTES, auth=(400, "API key not valid. Please pass a valid API key.", None))
