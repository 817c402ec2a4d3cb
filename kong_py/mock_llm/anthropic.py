"""Anthropic's Messages API: ``/v1/messages`` (and ``count_tokens``) and the model list.

Validation follows the real API where a translating gateway is most likely to slip:
``max_tokens`` and the ``anthropic-version`` header are required, and a ``system`` role
inside ``messages`` is refused (the system prompt is a top-level field). Streams use the
named events the official SDK expects: message_start, content_block_start, ping,
content_block_delta (text_delta / input_json_delta), content_block_stop, message_delta
(stop_reason, usage), message_stop.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from kong_py.mock_llm.content import Prompt, Reply, Tool, answer, new_id, text_of
from kong_py.mock_llm.wire import (ApiError, Call, Provider, Stream, bearer, integer, json_response,
                                   sse, stop_list)

STOP_REASON = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens", "tool": "tool_use"}

ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
    429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error",
}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error(exc: ApiError) -> web.Response:
    """``{"type": "error", "error": {"type", "message"}}``, as api.anthropic.com answers."""
    body = {"type": "error", "error": {"type": error_type(exc.status), "message": exc.message},
            "request_id": new_id("req_mock")}
    return json_response(body, exc.status)


def keys(request: web.Request) -> list[str]:
    key = request.headers.get("x-api-key")
    return ([key] if key else []) + bearer(request)


def _text_blocks(value: Any, name: str) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list):
        return text_of(value)
    raise ApiError(400, f"{name}: Input should be a valid string or a list of text blocks")


def messages_prompt(call: Call) -> Prompt:
    """The neutral view of a Messages body, validated as Anthropic validates it."""
    if call.header("anthropic-version") is None:
        raise ApiError(400, "anthropic-version: header is required")
    body = call.body
    if not isinstance(body, dict):
        raise ApiError(400, "The request body is not valid JSON")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model: Field required")
    max_tokens = integer(body.get("max_tokens"), "max_tokens", 1)
    if max_tokens is None:
        raise ApiError(400, "max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages: at least one message is required")
    prompt = Prompt(model=model, max_tokens=max_tokens, stream=bool(body.get("stream")),
                    stop=stop_list(body.get("stop_sequences"), "stop_sequences"))
    prompt.texts.append(_text_blocks(body.get("system"), "system"))
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":
            raise ApiError(400, 'messages: Unexpected role "system". The Messages API accepts a top-level '
                           '`system` parameter, not "system" as an input message role.')
        if role not in ("user", "assistant"):
            raise ApiError(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        prompt.texts.append(text_of(message.get("content")))
    last = messages[-1]
    content = last.get("content")
    if last["role"] == "user":
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"] \
            if isinstance(content, list) else []
        if results:
            prompt.tool_result = " ".join(text_of(b.get("content")) for b in results)
        else:
            prompt.last_user = text_of(content)
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise ApiError(400, "tools: each tool needs a name")
        prompt.tools.append(Tool(tool["name"], tool.get("input_schema") or {}))
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = str(choice.get("type"))
        prompt.tool_choice = {"none": "none", "any": "any", "tool": choice.get("name")}.get(kind)
    return prompt


def usage(reply: Reply) -> dict[str, Any]:
    return {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens}


def message(reply: Reply, model: str) -> dict[str, Any]:
    if reply.tool_call is not None:
        content = [{"type": "tool_use", "id": reply.tool_call.id, "name": reply.tool_call.name,
                    "input": reply.tool_call.arguments}]
    else:
        content = [{"type": "text", "text": reply.text}]
    return {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": STOP_REASON[reply.finish], "stop_sequence": reply.stop_sequence, "usage": usage(reply)}


def stream_error(message: str) -> bytes:
    """An ``error`` event, as the API sends when it is overloaded mid-stream."""
    return sse({"type": "error", "error": {"type": "overloaded_error", "message": message}}, "error")


async def stream_message(call: Call, reply: Reply, model: str) -> web.StreamResponse:
    start = message(reply, model) | {"content": [], "stop_reason": None, "stop_sequence": None,
                                     "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": 1}}
    stream = Stream(call, "text/event-stream", error_frame=stream_error)
    await stream.open()
    await stream.frame(sse({"type": "message_start", "message": start}, "message_start"))
    tool = reply.tool_call
    block: dict[str, Any] = ({"type": "text", "text": ""} if tool is None
                             else {"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}})
    await stream.frame(sse({"type": "content_block_start", "index": 0, "content_block": block},
                           "content_block_start"))
    await stream.frame(sse({"type": "ping"}, "ping"))
    for piece in reply.pieces():
        delta = ({"type": "text_delta", "text": piece} if tool is None
                 else {"type": "input_json_delta", "partial_json": piece})
        await stream.chunk(sse({"type": "content_block_delta", "index": 0, "delta": delta},
                               "content_block_delta"))
    await stream.end()
    await stream.frame(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    await stream.frame(sse({"type": "message_delta",
                            "delta": {"stop_reason": STOP_REASON[reply.finish],
                                      "stop_sequence": reply.stop_sequence},
                            "usage": {"output_tokens": reply.completion_tokens}}, "message_delta"))
    await stream.frame(sse({"type": "message_stop"}, "message_stop"))
    return await stream.finish()


async def messages(call: Call) -> web.StreamResponse:
    prompt = messages_prompt(call)
    reply = answer(prompt, call.controls, "toolu_")
    if prompt.stream:
        return await stream_message(call, reply, prompt.model)
    return json_response(message(reply, prompt.model))


async def count_tokens(call: Call) -> web.StreamResponse:
    if isinstance(call.body, dict):  # count_tokens takes no max_tokens (a copy: the record keeps the original)
        call.body = {"max_tokens": 1} | call.body
    return json_response({"input_tokens": messages_prompt(call).prompt_tokens})


def model_entry(model: str) -> dict[str, Any]:
    return {"type": "model", "id": model, "display_name": model, "created_at": "2024-10-22T00:00:00Z"}


async def models(call: Call) -> web.StreamResponse:
    names = list(call.controls.models)
    return json_response({"data": [model_entry(m) for m in names], "has_more": False,
                          "first_id": names[0] if names else None, "last_id": names[-1] if names else None})


async def model(call: Call) -> web.StreamResponse:
    name = call.request.match_info["model"]
    if name not in call.controls.models:
        raise ApiError(404, f"model: {name}")
    return json_response(model_entry(name))


ANTHROPIC = Provider("anthropic", error, keys, auth=(401, "invalid x-api-key", None), routes=(
    ("POST", "/v1/messages", messages),
    ("POST", "/v1/messages/count_tokens", count_tokens),
))
