"""Amazon Bedrock's Converse API: ``/model/{modelId}/converse`` and ``converse-stream``.

Errors are AWS REST-JSON errors: a ``{"message"}`` body with the exception name in the
``x-amzn-ErrorType`` header, which is where botocore looks for it. The stream is AWS
event-stream binary framing (see ``eventstream``). As on Bedrock, a text block starts with
its first delta (no contentBlockStart); a tool-use block opens with contentBlockStart
naming the tool, and its input arrives as JSON string deltas.
"""
from __future__ import annotations

import time
import urllib.parse
from typing import Any

import orjson
from aiohttp import web

from kong_py.mock_llm import eventstream
from kong_py.mock_llm.content import Prompt, Reply, Tool, answer, new_id
from kong_py.mock_llm.wire import ApiError, Call, Provider, Stream, bearer, integer, json_response, stop_list

STOP_REASON = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens", "tool": "tool_use"}
EXCEPTIONS = {400: "ValidationException", 401: "UnrecognizedClientException", 403: "AccessDeniedException",
              404: "ResourceNotFoundException", 408: "ModelTimeoutException", 424: "ModelErrorException",
              429: "ThrottlingException", 500: "InternalServerException", 503: "ServiceUnavailableException"}


def exception_name(status: int) -> str:
    return EXCEPTIONS.get(status, "InternalServerException" if status >= 500 else "ValidationException")


def error(exc: ApiError) -> web.Response:
    name = exc.code if exc.code and exc.code.endswith("Exception") else exception_name(exc.status)
    headers = {"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
               "x-amzn-RequestId": new_id("", 32)}
    return json_response({"message": exc.message}, exc.status, headers)


def keys(request: web.Request) -> list[str]:
    """A bearer API key, or the access key id of a SigV4 ``Credential=`` (the signature is not checked)."""
    value = request.headers.get("Authorization", "")
    if value.startswith("AWS4-HMAC-SHA256"):
        credential = value.partition("Credential=")[2].split("/", 1)[0]
        return [credential] if credential else []
    return bearer(request)


def _texts(blocks: Any) -> str:
    if not isinstance(blocks, list):
        return ""
    texts = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif "json" in block:
            texts.append(orjson.dumps(block["json"]).decode())
        elif isinstance(block.get("toolResult"), dict):
            texts.append(_texts(block["toolResult"].get("content")))
    return " ".join(t for t in texts if t)


def converse_prompt(body: Any, model: str, stream: bool) -> Prompt:
    if not isinstance(body, dict):
        raise ApiError(400, "Malformed input request, please reformat your input and try again.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "The model returned the following errors: messages: at least one message is required")
    inference = body.get("inferenceConfig") or {}
    prompt = Prompt(model=model, stream=stream, max_tokens=integer(inference.get("maxTokens"), "maxTokens", 1),
                    stop=stop_list(inference.get("stopSequences"), "stopSequences"))
    prompt.texts.append(_texts(body.get("system")))
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise ApiError(400, f"1 validation error detected: Value at 'messages.{i + 1}.member.role' failed to "
                           "satisfy constraint: Member must satisfy enum value set: [user, assistant]")
        if not isinstance(message.get("content"), list):
            raise ApiError(400, f"Value at 'messages.{i + 1}.member.content' must be a list of content blocks")
        prompt.texts.append(_texts(message["content"]))
    if messages[0]["role"] != "user":
        raise ApiError(400, "A conversation must start with a user message. Try again with a conversation "
                       "that starts with a user message.")
    last = messages[-1]
    results = [b["toolResult"] for b in last["content"] if isinstance(b, dict) and "toolResult" in b]
    if results:
        prompt.tool_result = " ".join(_texts(r.get("content")) for r in results)
    elif last["role"] == "user":
        prompt.last_user = _texts(last["content"])
    config = body.get("toolConfig") or {}
    for tool in config.get("tools") or []:
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            prompt.tools.append(Tool(spec["name"], (spec.get("inputSchema") or {}).get("json") or {}))
    choice = config.get("toolChoice") or {}
    if "any" in choice:
        prompt.tool_choice = "any"
    elif isinstance(choice.get("tool"), dict):
        prompt.tool_choice = choice["tool"].get("name")
    return prompt


def usage(reply: Reply) -> dict[str, int]:
    return {"inputTokens": reply.prompt_tokens, "outputTokens": reply.completion_tokens,
            "totalTokens": reply.total_tokens}


def converse_response(reply: Reply, started: float) -> dict[str, Any]:
    if reply.tool_call is not None:
        content: list[dict[str, Any]] = [{"toolUse": {"toolUseId": reply.tool_call.id, "name": reply.tool_call.name,
                                                      "input": reply.tool_call.arguments}}]
    else:
        content = [{"text": reply.text}]
    return {"output": {"message": {"role": "assistant", "content": content}},
            "stopReason": STOP_REASON[reply.finish], "usage": usage(reply),
            "metrics": {"latencyMs": int((time.monotonic() - started) * 1000)}}


async def stream_converse(call: Call, reply: Reply, started: float) -> web.StreamResponse:
    stream = Stream(call, eventstream.CONTENT_TYPE, {"x-amzn-RequestId": new_id("", 32)},
                    error_frame=lambda message: eventstream.exception("internalServerException", message))
    await stream.open()
    await stream.frame(eventstream.event("messageStart", {"role": "assistant"}))
    tool = reply.tool_call
    if tool is not None:
        await stream.frame(eventstream.event("contentBlockStart", {
            "contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": tool.id, "name": tool.name}}}))
    for piece in reply.pieces():
        delta = {"text": piece} if tool is None else {"toolUse": {"input": piece}}
        await stream.chunk(eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta}))
    await stream.end()
    await stream.frame(eventstream.event("contentBlockStop", {"contentBlockIndex": 0}))
    await stream.frame(eventstream.event("messageStop", {"stopReason": STOP_REASON[reply.finish]}))
    await stream.frame(eventstream.event("metadata", {
        "usage": usage(reply), "metrics": {"latencyMs": int((time.monotonic() - started) * 1000)}}))
    return await stream.finish()


def _model(call: Call) -> str:
    return urllib.parse.unquote(call.request.match_info["model_id"])


async def converse(call: Call) -> web.StreamResponse:
    started = time.monotonic()
    prompt = converse_prompt(call.body, _model(call), False)
    return json_response(converse_response(answer(prompt, call.controls, "tooluse_"), started))


async def converse_stream(call: Call) -> web.StreamResponse:
    started = time.monotonic()
    prompt = converse_prompt(call.body, _model(call), True)
    return await stream_converse(call, answer(prompt, call.controls, "tooluse_"), started)


BEDROCK = Provider("bedrock", error, keys, (
    ("POST", "/model/{model_id:.+}/converse", converse),
    ("POST", "/model/{model_id:.+}/converse-stream", converse_stream),
), auth=(403, "The security token included in the request is invalid.",
          "UnrecognizedClientException"))

