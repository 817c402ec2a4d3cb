"""Bedrock provider: OpenAI chat requests as Converse bodies, answers, AWS
event-stream frames (cut anywhere) and errors back as OpenAI's."""
from __future__ import annotations

import binascii
import random
import struct
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from plugins.ai_proxy.providers import provider_for
from plugins.ai_proxy.providers.bedrock import Bedrock

B = Bedrock()
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"


def target(path: str | None = None, credentials: dict[str, Any] | None = None) -> Any:
    return SimpleNamespace(path=path, credentials=credentials, entity={}, headers=())


def encode(**request: Any) -> dict[str, Any]:
    return B.encode_request(request, MODEL, False)


def test_registered_and_host() -> None:
    provider = provider_for("bedrock")
    assert isinstance(provider, Bedrock)
    assert (provider.name, provider.wire, provider.embeddings, provider.host) == ("bedrock", "bedrock", False, None)
    assert B.host_for(target()) == "bedrock-runtime.us-east-1.amazonaws.com"
    assert B.host_for(target(credentials={"aws_region": "eu-west-3"})) == "bedrock-runtime.eu-west-3.amazonaws.com"
    assert B.host_for(target(credentials={"aws_access_key_id": "AKIA"})) == "bedrock-runtime.us-east-1.amazonaws.com"
    assert B.request_headers(target()) == []


def test_endpoints() -> None:
    assert B.endpoint("chat", MODEL, False, target()) == (f"/model/{MODEL}/converse", "")
    assert B.endpoint("chat", MODEL, True, target()) == (f"/model/{MODEL}/converse-stream", "")
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-2-1b-instruct-v1:0"
    assert B.endpoint("chat", arn, False, target())[0] == (
        "/model/arn:aws:bedrock:us-east-1:123456789012:inference-profile%2Fus.meta.llama3-2-1b-instruct-v1:0/converse")
    assert B.endpoint("chat", MODEL, False, target("/model/mine/converse")) == ("/model/mine/converse", "")
    assert B.endpoint("chat", MODEL, True, target("/model/mine/converse")) == ("/model/mine/converse-stream", "")
    assert B.endpoint("chat", MODEL, True, target("/other")) == ("/other", "")


def test_messages_system_and_params() -> None:
    body = B.encode_request({"model": "x", "stream": True, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        {"role": "user", "content": "Hello"},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Bonjour"}]},
        {"role": "assistant", "content": "!"},
        {"role": "user", "content": "Bye"},
    ], "max_tokens": 64, "temperature": 0, "top_p": 0.5, "stop": "END"}, MODEL, True)
    assert body == {
        "system": [{"text": "Be brief."}, {"text": "Use French."}],
        "messages": [{"role": "user", "content": [{"text": "Hello"}, {"text": "again"}]},
                     {"role": "assistant", "content": [{"text": "Bonjour"}, {"text": "!"}]},
                     {"role": "user", "content": [{"text": "Bye"}]}],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0, "topP": 0.5, "stopSequences": ["END"]},
    }
    body = encode(messages=[{"role": "user", "content": "hi"}], max_completion_tokens=5, stop=["a", "b"])
    assert body["inferenceConfig"] == {"maxTokens": 5, "stopSequences": ["a", "b"]}
    assert "inferenceConfig" not in encode(messages=[{"role": "user", "content": "hi"}])


WEATHER: dict[str, Any] = {"type": "function", "function": {
    "name": "weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
NOW = {"type": "function", "function": {"name": "now"}}
WEATHER_SPEC = {"toolSpec": {"name": "weather", "description": "The weather in a city",
                             "inputSchema": {"json": WEATHER["function"]["parameters"]}}}
NOW_SPEC = {"toolSpec": {"name": "now", "description": "now",
                         "inputSchema": {"json": {"type": "object", "properties": {}}}}}


@pytest.mark.parametrize("choice, expected", [
    (None, None), ("auto", {"auto": {}}), ("required", {"any": {}}),
    ({"type": "function", "function": {"name": "weather"}}, {"tool": {"name": "weather"}}),
])
def test_tools_and_tool_choice(choice: Any, expected: dict[str, Any] | None) -> None:
    request: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER, NOW]}
    if choice is not None:
        request["tool_choice"] = choice
    config = encode(**request)["toolConfig"]
    assert config["tools"] == [WEATHER_SPEC, NOW_SPEC]
    assert config.get("toolChoice") == expected


def test_tool_choice_none_drops_the_tools() -> None:
    body = encode(messages=[{"role": "user", "content": "hi"}], tools=[WEATHER], tool_choice="none")
    assert "toolConfig" not in body


CONVERSATION = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "tooluse_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"id": "tooluse_2", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Rome"}'}}]},
    {"role": "tool", "tool_call_id": "tooluse_1", "content": '{"temp": 21}'},
    {"role": "tool", "tool_call_id": "tooluse_2", "content": [{"type": "text", "text": "sunny"}]},
    {"role": "user", "content": "Thanks, summarise."},
]


def test_tool_calls_and_results() -> None:
    body = encode(messages=CONVERSATION, tools=[WEATHER])
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "tooluse_2", "name": "weather", "input": {"city": "Rome"}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"temp": 21}}]}},
            {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "sunny"}]}},
            {"text": "Thanks, summarise."}]},
    ]
    assert body["toolConfig"] == {"tools": [WEATHER_SPEC]}


def test_tool_history_keeps_a_tool_config() -> None:
    """Converse refuses toolUse blocks without toolConfig: "none" keeps the tools used, and
    a follow-up without tools gets minimal specs for them."""
    assert encode(messages=CONVERSATION, tools=[WEATHER, NOW], tool_choice="none")["toolConfig"] == {
        "tools": [WEATHER_SPEC]}
    assert encode(messages=CONVERSATION)["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "weather", "description": "weather", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}
    odd = encode(messages=[{"role": "assistant", "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}])
    assert odd["messages"][0]["content"] == [{"toolUse": {"toolUseId": "t", "name": "f", "input": {"value": [1]}}}]


def test_images() -> None:
    body = encode(messages=[{"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
        {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lGOD"}},
        {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}},
        {"type": "image_url", "image_url": {"url": "s3://bucket/cat.jpg"}},
        {"type": "image_url", "image_url": "https://example.com/cat.png"},
    ]}])
    assert body["messages"][0]["content"] == [
        {"text": "Compare"},
        {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
        {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}},
        {"image": {"format": "webp", "source": {"bytes": "UklGRg=="}}},
        {"image": {"format": "gif", "source": {"bytes": "R0lGOD"}}},
        {"text": "[image of unsupported type image/bmp]"},
        {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bucket/cat.jpg"}}}},
        {"text": "[image: https://example.com/cat.png]"},
    ]


# -- answers ------------------------------------------------------------------------------------
def answer(content: list[dict[str, Any]], reason: str = "end_turn") -> dict[str, Any]:
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": reason,
            "usage": {"inputTokens": 12, "outputTokens": 4, "totalTokens": 16}, "metrics": {"latencyMs": 300}}


def test_answer_text() -> None:
    out = B.decode_response(answer([{"text": "Hello "}, {"reasoningContent": {"reasoningText": {"text": "hm"}}},
                                    {"text": "world"}]), MODEL)
    assert out["object"] == "chat.completion" and out["model"] == MODEL and isinstance(out["created"], int)
    assert out["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello world"}, "logprobs": None,
                               "finish_reason": "stop"}]
    assert out["usage"] == {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}


def test_answer_tool_calls() -> None:
    out = B.decode_response(answer([
        {"toolUse": {"toolUseId": "tooluse_a", "name": "weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "tooluse_b", "name": "now", "input": {}}}], "tool_use"), MODEL)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "tooluse_a", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
        {"id": "tooluse_b", "type": "function", "function": {"name": "now", "arguments": "{}"}}]


@pytest.mark.parametrize("reason, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter"),
    ("model_context_window_exceeded", "length"), ("something_new", "stop")])
def test_stop_reasons(reason: str, finish: str) -> None:
    assert B.decode_response(answer([{"text": "x"}], reason), MODEL)["choices"][0]["finish_reason"] == finish


# -- streams: real event-stream frames ----------------------------------------------------------
def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (lengths + CRC), string headers, payload, message CRC."""
    raw = b"".join(struct.pack("!B", len(k)) + k.encode() + b"\x07" + struct.pack("!H", len(v.encode())) + v.encode()
                   for k, v in headers.items())
    prelude = struct.pack("!II", 12 + len(raw) + len(payload) + 4, len(raw))
    message = prelude + struct.pack("!I", binascii.crc32(prelude)) + raw + payload
    return message + struct.pack("!I", binascii.crc32(message))


def event(kind: str, payload: dict[str, Any]) -> bytes:
    return frame({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                 orjson.dumps({**payload, "p": "abcdefgh"}))  # Bedrock pads its events with "p"


def exception(kind: str, message: str) -> bytes:
    return frame({":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
                 orjson.dumps({"message": message}))


STREAM = b"".join([
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me "}}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "check, ünïcode."}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_x", "name": "weather"}}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city": '}}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}}),
    event("contentBlockStop", {"contentBlockIndex": 1}),
    event("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_y", "name": "now"}}}),
    event("contentBlockStop", {"contentBlockIndex": 2}),
    event("messageStop", {"stopReason": "tool_use"}),
    event("metadata", {"usage": {"inputTokens": 20, "outputTokens": 11, "totalTokens": 31}, "metrics": {"latencyMs": 9}}),
])


def test_frame_builder_matches_botocore() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(STREAM)
    messages = list(buffer)
    assert len(messages) == 12
    assert messages[0].headers == {":event-type": "messageStart", ":content-type": "application/json",
                                   ":message-type": "event"}
    assert orjson.loads(messages[1].payload)["delta"] == {"text": "Let me "}


def run(pieces: list[bytes]) -> list[dict[str, Any]]:
    decoder = B.stream_decoder(MODEL)
    out: list[dict[str, Any]] = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    out.extend(decoder.close())
    for chunk in out:
        chunk.pop("created", None)
    return out


def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "", "object": "chat.completion.chunk", "model": MODEL,
            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_stream_chunks() -> None:
    assert run([STREAM]) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let me "}),
        chunk({"content": "check, ünïcode."}),
        chunk({"tool_calls": [{"index": 0, "id": "tooluse_x", "type": "function",
                               "function": {"name": "weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "tooluse_y", "type": "function",
                               "function": {"name": "now", "arguments": ""}}]}),
        chunk({}, "tool_calls"),
        chunk(None, usage={"prompt_tokens": 20, "completion_tokens": 11, "total_tokens": 31}),
    ]


def test_stream_cut_anywhere() -> None:
    whole = run([STREAM])
    assert run([STREAM[i:i + 1] for i in range(len(STREAM))]) == whole
    rng = random.Random(8)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 20)))
        assert run([STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)])]) == whole


@pytest.mark.parametrize("kind, error_type", [
    ("throttlingException", "rate_limit_error"), ("validationException", "invalid_request_error"),
    ("modelStreamErrorException", "api_error"), ("internalServerException", "api_error"),
    ("serviceUnavailableException", "api_error"), ("somethingElse", "api_error")])
def test_stream_exception(kind: str, error_type: str) -> None:
    data = event("messageStart", {"role": "assistant"}) + exception(kind, "Too many requests, please wait.")
    assert run([data[i:i + 7] for i in range(0, len(data), 7)]) == [
        chunk({"role": "assistant", "content": ""}),
        {"error": {"message": "Too many requests, please wait.", "type": error_type, "param": None, "code": kind}}]


def test_stream_error_message_and_corruption() -> None:
    error = frame({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b"")
    assert run([error]) == [{"error": {"message": "boom", "type": "api_error", "param": None, "code": "InternalFailure"}}]
    good = event("messageStart", {"role": "assistant"})
    bad = bytearray(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}))
    bad[-6] ^= 0xFF  # a payload byte: the message CRC no longer matches
    out = run([good + bytes(bad) + good])
    assert out[0] == chunk({"role": "assistant", "content": ""})
    assert len(out) == 2 and out[1]["error"]["type"] == "api_error" and "ChecksumMismatch" in out[1]["error"]["message"]


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("status, message, expected_status, kind, code", [
    (400, "Malformed input request: #: required key [messages] not found", 400, "invalid_request_error", None),
    (400, "Input is too long for requested model.", 400, "invalid_request_error", "context_length_exceeded"),
    (403, "The security token included in the request is invalid.", 401, "authentication_error", "invalid_api_key"),
    (403, "You don't have access to the model with the specified model ID.", 403, "permission_error", None),
    (404, "Could not resolve the foundation model from the provided model identifier.", 404, "not_found_error", None),
    (408, "Model has timed out in processing the request.", 408, "timeout_error", None),
    (424, "Received error from model", 502, "api_error", None),
    (429, "Too many requests, please wait before trying again.", 429, "rate_limit_error", "rate_limit_exceeded"),
    (500, "Internal server error", 500, "api_error", None),
    (503, "Service unavailable", 503, "api_error", None),
])
def test_errors(status: int, message: str, expected_status: int, kind: str, code: str | None) -> None:
    assert B.decode_error(status, orjson.dumps({"message": message})) == (
        expected_status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


def test_errors_in_other_shapes() -> None:
    assert B.decode_error(400, b'{"Message": "bad"}')[1]["error"]["message"] == "bad"
    assert B.decode_error(502, b"<html>bad gateway</html>") == (502, {"error": {
        "message": "<html>bad gateway</html>", "type": "api_error", "param": None, "code": None}})
    assert B.decode_error(500, b"")[1]["error"]["message"] == "status 500"
