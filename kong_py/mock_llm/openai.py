"""OpenAI's chat completions, embeddings and model list, and Azure OpenAI's paths.

Azure OpenAI speaks the same bodies under ``/openai/deployments/{deployment}/...`` with a
required ``api-version`` query; the deployment stands for the model. Shapes follow the
public API reference closely enough that the official ``openai`` SDK parses every answer,
streamed ones included (``chat.completion.chunk`` events, a usage chunk when
``stream_options.include_usage`` is set, ``data: [DONE]`` at the end).
"""
from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from kong_py.mock_llm import anthropic
from kong_py.mock_llm.content import (Prompt, Reply, Tool, answer, count_tokens, embedding,
                                      embedding_base64, new_id, text_of)
from kong_py.mock_llm.wire import (ApiError, Call, Provider, Stream, bearer, integer, json_response,
                                   sse, stop_list)

FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool": "tool_calls"}
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
FINGERPRINT = "fp_mock"

#: status -> (type, code) of OpenAI's error bodies
ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def error(exc: ApiError) -> web.Response:
    """``{"error": {"message", "type", "param", "code"}}``, as api.openai.com answers."""
    kind, code = ERROR_KINDS.get(exc.status, ("server_error" if exc.status >= 500 else "invalid_request_error", None))
    body = {"error": {"message": exc.message, "type": kind, "param": exc.param, "code": exc.code or code}}
    return json_response(body, exc.status)


def azure_error(exc: ApiError) -> web.Response:
    """Azure's ``{"error": {"code", "message"}}`` (plus OpenAI's fields, which Azure relays)."""
    kind, _ = ERROR_KINDS.get(exc.status, ("server_error" if exc.status >= 500 else "invalid_request_error", None))
    body = {"error": {"code": exc.code or str(exc.status), "message": exc.message, "type": kind, "param": exc.param}}
    return json_response(body, exc.status)


def keys(request: web.Request) -> list[str]:
    return bearer(request)


def azure_keys(request: web.Request) -> list[str]:
    key = request.headers.get("api-key")
    return ([key] if key else []) + bearer(request)


# -- requests -------------------------------------------------------------------------


def _body(call: Call) -> dict[str, Any]:
    if not isinstance(call.body, dict):
        raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This likely means you "
                       "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)")
    return call.body


def chat_prompt(body: dict[str, Any], model: str) -> Prompt:
    """The neutral view of a chat completions body (validated as OpenAI validates it)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' is a required property and must be a non-empty array", param="messages")
    texts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ApiError(400, f"Invalid value for 'messages[{i}].role'", param=f"messages[{i}].role")
        texts.append(text_of(message.get("content")))
    last = messages[-1]
    prompt = Prompt(model=model, texts=texts, stream=bool(body.get("stream")))
    if last["role"] == "user":
        prompt.last_user = text_of(last.get("content"))
    elif last["role"] in ("tool", "function"):
        prompt.tool_result = text_of(last.get("content"))
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ApiError(400, "Missing required parameter: 'tools[].function.name'", param="tools")
        prompt.tools.append(Tool(function["name"], function.get("parameters") or {}))
    for function in body.get("functions") or []:  # the deprecated spelling
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            prompt.tools.append(Tool(function["name"], function.get("parameters") or {}))
    choice = body.get("tool_choice")
    if choice in ("none", "required"):
        prompt.tool_choice = "none" if choice == "none" else "any"
    elif isinstance(choice, dict):
        prompt.tool_choice = (choice.get("function") or {}).get("name")
    prompt.max_tokens = integer(body.get("max_completion_tokens", body.get("max_tokens")), "max_tokens", 1)
    prompt.stop = stop_list(body.get("stop"), "stop")
    return prompt


# -- answers --------------------------------------------------------------------------


def completion(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
    if reply.tool_call is not None:
        message["content"] = None
        message["tool_calls"] = [{"id": reply.tool_call.id, "type": "function",
                                  "function": {"name": reply.tool_call.name,
                                               "arguments": reply.tool_call.arguments_json}}]
    return {
        "id": new_id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": FINISH[reply.finish]}],
        "usage": usage(reply), "service_tier": "default", "system_fingerprint": FINGERPRINT,
    }


def usage(reply: Reply) -> dict[str, Any]:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.total_tokens}


def stream_error(message: str) -> bytes:
    """An error inside a stream: a ``data:`` event with an ``error`` object, and no ``[DONE]``."""
    return sse({"error": {"message": message, "type": "server_error", "param": None, "code": None}})


async def stream_completion(call: Call, reply: Reply, model: str, include_usage: bool) -> web.StreamResponse:
    """``chat.completion.chunk`` events: role, content (or tool-call argument) deltas, finish."""
    head = {"id": new_id("chatcmpl-"), "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "service_tier": "default", "system_fingerprint": FINGERPRINT}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = head | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            data["usage"] = None
        return sse(data)

    stream = Stream(call, "text/event-stream", error_frame=stream_error)
    await stream.open()
    tool = reply.tool_call
    if tool is None:
        await stream.frame(chunk({"role": "assistant", "content": "", "refusal": None}))
        for piece in reply.pieces():
            await stream.chunk(chunk({"content": piece}))
    else:
        await stream.frame(chunk({"role": "assistant", "content": None, "refusal": None, "tool_calls": [
            {"index": 0, "id": tool.id, "type": "function", "function": {"name": tool.name, "arguments": ""}}]}))
        for piece in reply.pieces():
            await stream.chunk(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    await stream.end()
    await stream.frame(chunk({}, FINISH[reply.finish]))
    if include_usage:
        await stream.frame(sse(head | {"choices": [], "usage": usage(reply)}))
    await stream.frame(b"data: [DONE]\n\n")
    return await stream.finish()


async def _chat(call: Call, model: str) -> web.StreamResponse:
    body = _body(call)
    prompt = chat_prompt(body, model)
    reply = answer(prompt, call.controls, "call_")
    if not prompt.stream:
        return json_response(completion(reply, model))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return await stream_completion(call, reply, model, include_usage)


def _model(call: Call) -> str:
    body = _body(call)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "you must provide a model parameter", param="model")
    return model


async def chat_completions(call: Call) -> web.StreamResponse:
    return await _chat(call, _model(call))


async def _embed(call: Call, model: str) -> web.StreamResponse:
    body = _body(call)
    raw = body.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw)):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "'input' is a required property", param="input")
    texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in raw if isinstance(x, (str, list))]
    if len(texts) != len(raw):
        raise ApiError(400, "'input' must be a string, an array of strings or of token arrays", param="input")
    dimensions = integer(body.get("dimensions"), "dimensions", 1) or call.controls.embedding_dimensions
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise ApiError(400, f"Invalid value for 'encoding_format': {fmt!r}", param="encoding_format")
    data = []
    for index, text in enumerate(texts):
        vector = embedding(text, dimensions)
        data.append({"object": "embedding", "index": index,
                     "embedding": embedding_base64(vector) if fmt == "base64" else vector})
    tokens = sum(count_tokens(t) for t in texts)
    return json_response({"object": "list", "data": data, "model": model,
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def embeddings(call: Call) -> web.StreamResponse:
    return await _embed(call, _model(call))


def model_entry(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1700000000, "owned_by": "mock"}


async def models(call: Call) -> web.StreamResponse:
    """OpenAI's list; Anthropic's when the request carries ``anthropic-version``."""
    if call.header("anthropic-version") is not None:
        return await anthropic.models(call)
    return json_response({"object": "list", "data": [model_entry(m) for m in call.controls.models]})


async def model(call: Call) -> web.StreamResponse:
    if call.header("anthropic-version") is not None:
        return await anthropic.model(call)
    name = call.request.match_info["model"]
    if name not in call.controls.models:
        raise ApiError(404, f"The model '{name}' does not exist", param="model", code="model_not_found")
    return json_response(model_entry(name))


# -- Azure OpenAI ----------------------------------------------------------------------


def _deployment(call: Call) -> str:
    if not call.query.get("api-version"):
        raise ApiError(400, "The api-version query parameter (?api-version=) is required for all requests.",
                       code="MissingApiVersionParameter")
    return call.request.match_info["deployment"]


async def azure_chat_completions(call: Call) -> web.StreamResponse:
    return await _chat(call, _deployment(call))


async def azure_embeddings(call: Call) -> web.StreamResponse:
    return await _embed(call, _deployment(call))


OPENAI = Provider("openai", error, keys, auth=(401, "Incorrect API key provided.", "invalid_api_key"),
                  routes=(
    ("POST", "/v1/chat/completions", chat_completions),
    ("POST", "/v1/embeddings", embeddings),
    ("GET", "/v1/models", models),
    ("GET", "/v1/models/{model}", model),
))

AZURE = Provider("azure", azure_error, azure_keys, auth=(
    401, "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource.", "401"), routes=(
    ("POST", "/openai/deployments/{deployment}/chat/completions", azure_chat_completions),
    ("POST", "/openai/deployments/{deployment}/embeddings", azure_embeddings),
))
