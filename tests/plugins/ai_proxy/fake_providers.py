"""Small fake OpenAI and Anthropic servers for the ai-proxy tests (imported as
``fake_providers``): fixed answers, streamed or not, and a record of what they got."""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def _event(name: str | None, data: Any) -> bytes:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


async def anthropic_handler(request: web.Request, upstream: Any) -> web.StreamResponse:
    body = await request.json()
    if body.get("stream"):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_event("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"], "content": [],
            "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 0}}}))
        await response.write(_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                            "content_block": {"type": "text", "text": ""}}))
        for word in ("Hello", " from", " claude"):
            await response.write(_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                                "delta": {"type": "text_delta", "text": word}}))
        await response.write(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        await response.write(_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                                      "usage": {"output_tokens": 3}}))
        await response.write(_event("message_stop", {"type": "message_stop"}))
        await response.write_eof()
        return response
    return web.json_response({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                              "content": [{"type": "text", "text": "Hello from claude"}], "stop_reason": "end_turn",
                              "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 3}})


async def openai_handler(request: web.Request, upstream: Any) -> web.StreamResponse:
    body = await request.json()
    if body.get("stream"):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        await response.write(_event(None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                                       "content": ""}}]}))
        for word in ("Hello", " from", " gpt"):
            await response.write(_event(None, {**base, "choices": [{"index": 0, "delta": {"content": word}}]}))
        await response.write(_event(None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(_event(None, {**base, "choices": [], "usage": {
                "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
    return web.json_response({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
                              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from gpt"},
                                           "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
