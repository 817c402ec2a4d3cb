"""Gemini provider: OpenAI chat requests as generateContent bodies, answers,
SSE streams (cut anywhere) and errors back as OpenAI's."""
from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from plugins.ai_proxy.providers import provider_for
from plugins.ai_proxy.providers.gemini import Gemini

G = Gemini()


def target(path: str | None = None) -> Any:
    return SimpleNamespace(path=path, credentials=None, entity={}, headers=())


def encode(**request: Any) -> dict[str, Any]:
    return G.encode_request(request, "gemini-2.0-flash", False)


def test_registered() -> None:
    provider = provider_for("Gemini")
    assert isinstance(provider, Gemini)
    assert (provider.name, provider.wire, provider.embeddings, provider.host) == (
        "gemini", "gemini", False, "generativelanguage.googleapis.com")
    assert G.request_headers(target()) == []


def test_endpoints() -> None:
    assert G.endpoint("chat", "gemini-2.0-flash", False, target()) == (
        "/v1beta/models/gemini-2.0-flash:generateContent", "")
    assert G.endpoint("chat", "gemini-2.0-flash", True, target()) == (
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent", "alt=sse")
    assert G.endpoint("chat", "models/gemini-pro", False, target())[0] == "/v1beta/models/gemini-pro:generateContent"
    assert G.endpoint("chat", "tunedModels/mine", False, target())[0] == "/v1beta/tunedModels/mine:generateContent"


def test_target_path_replaces_the_path() -> None:
    vertex = "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent"
    assert G.endpoint("chat", "x", False, target(vertex)) == (vertex, "")
    path, query = G.endpoint("chat", "x", True, target(vertex))
    assert path.endswith("/models/gemini-2.0-flash:streamGenerateContent") and query == "alt=sse"
    assert G.endpoint("chat", "x", True, target("/custom")) == ("/custom", "alt=sse")


def test_messages_system_and_roles() -> None:
    body = encode(model="ignored", stream=True, messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        {"role": "user", "content": "Hello"},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": "Bye"},
    ])
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief.\n\nUse French."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hello"}, {"text": "again"}]},
        {"role": "model", "parts": [{"text": "Bonjour"}]},
        {"role": "user", "parts": [{"text": "Bye"}]},
    ]
    assert "model" not in body and "stream" not in body and "generationConfig" not in body


def test_generation_config() -> None:
    body = encode(messages=[{"role": "user", "content": "hi"}], max_tokens=50, temperature=0.2, top_p=0.9,
                  stop="END", presence_penalty=0.5, frequency_penalty=0.1, seed=7)
    assert body["generationConfig"] == {"maxOutputTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"],
                                        "presencePenalty": 0.5, "frequencyPenalty": 0.1, "seed": 7}
    body = encode(messages=[{"role": "user", "content": "hi"}], max_completion_tokens=9, stop=["a", "b"], temperature=0)
    assert body["generationConfig"] == {"maxOutputTokens": 9, "stopSequences": ["a", "b"], "temperature": 0}


def test_response_format() -> None:
    body = encode(messages=[{"role": "user", "content": "hi"}], response_format={"type": "json_object"})
    assert body["generationConfig"] == {"responseMimeType": "application/json"}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    body = encode(messages=[{"role": "user", "content": "hi"}],
                  response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert body["generationConfig"]["responseSchema"] == {"type": "object", "properties": {"a": {"type": "string"}}}


WEATHER = {"type": "function", "function": {
    "name": "weather", "description": "The weather in a city",
    "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
                   "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                                  "days": {"type": "array", "items": {"type": "integer", "additionalProperties": 1}},
                                  "kind": {"const": "now"}},
                   "required": ["city"]}}}
NOW = {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}


def test_tools_and_schemas() -> None:
    body = encode(messages=[{"role": "user", "content": "hi"}], tools=[WEATHER, NOW])
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "weather", "description": "The weather in a city",
         "parameters": {"type": "object", "required": ["city"], "properties": {
             "city": {"type": "string"}, "unit": {"type": "string", "nullable": True, "enum": ["c", "f"]},
             "days": {"type": "array", "items": {"type": "integer"}}, "kind": {"enum": ["now"]}}}},
        {"name": "now", "description": ""},  # Gemini refuses an object schema without properties
    ]}]
    assert "toolConfig" not in body


@pytest.mark.parametrize("choice, config", [
    ("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"}),
    ({"type": "function", "function": {"name": "weather"}}, {"mode": "ANY", "allowedFunctionNames": ["weather"]}),
])
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    body = encode(messages=[{"role": "user", "content": "hi"}], tools=[WEATHER], tool_choice=choice)
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_tool_calls_and_results() -> None:
    body = encode(tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris and Rome, and the time?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Rome"}'}},
            {"id": "t9", "type": "function", "function": {"name": "now", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 25C"},
        {"role": "tool", "tool_call_id": "t9", "content": [{"type": "text", "text": "[1, 2]"}]},
        {"role": "assistant", "content": "Paris 21, Rome 25.", "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "now", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "12:00"},  # ids repeat across turns: the latest wins
    ])
    assert body["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                                    {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
                                    {"functionCall": {"name": "now", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "weather", "response": {"temp": 21}}},
                                   {"functionResponse": {"name": "weather", "response": {"output": "sunny, 25C"}}},
                                   {"functionResponse": {"name": "now", "response": {"output": [1, 2]}}}]},
        {"role": "model", "parts": [{"text": "Paris 21, Rome 25."}, {"functionCall": {"name": "now", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "now", "response": {"output": "12:00"}}}]},
    ]


def test_unknown_tool_call_id_uses_the_message_name() -> None:
    body = encode(messages=[{"role": "tool", "tool_call_id": "nope", "name": "lookup", "content": "x"}])
    assert body["contents"] == [{"role": "user", "parts": [
        {"functionResponse": {"name": "lookup", "response": {"output": "x"}}}]}]


def test_images_audio_and_files() -> None:
    body = encode(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=2"}},
        {"type": "image_url", "image_url": {"url": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
        {"type": "image_url", "image_url": "gs://bucket/photo.png"},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "mp3"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
    ]}])
    assert body["contents"][0]["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=2"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/photo.png"}},
        {"inlineData": {"mimeType": "audio/mp3", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
    ]


def test_empty_turns_are_left_out() -> None:
    body = encode(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""},
                            {"role": "user", "content": "there"}])
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}, {"text": "there"}]}]
    assert "systemInstruction" not in encode(messages=[{"role": "system", "content": ""}])


# -- answers ------------------------------------------------------------------------------------
def answer(parts: list[dict[str, Any]], reason: str | None = "STOP", **extra: Any) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": reason, "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
            "modelVersion": "gemini-2.0-flash-001", "responseId": "resp-1", **extra}


def test_answer_text() -> None:
    out = G.decode_response(answer([{"text": "Hello "}, {"text": "world", "thought": False},
                                    {"text": "hmm", "thought": True}]), "gemini-2.0-flash")
    assert out["object"] == "chat.completion" and out["id"] == "resp-1" and out["model"] == "gemini-2.0-flash-001"
    assert isinstance(out["created"], int)
    assert out["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello world"}, "logprobs": None,
                               "finish_reason": "stop"}]
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def test_answer_tool_calls() -> None:
    out = G.decode_response(answer([
        {"text": "Let me check."},
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "weather", "args": {"city": "Rome"}, "id": "g-7"}},
        {"functionCall": {"name": "now"}},
    ]), "m")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"] == [
        {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
         "extra_content": {"google": {"thought_signature": "c2ln"}}},
        {"id": "g-7", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]
    only_calls = G.decode_response(answer([{"functionCall": {"name": "now", "args": {}}}]), "m")
    assert only_calls["choices"][0]["message"]["content"] is None


def test_tool_calls_round_trip() -> None:
    """The ids and thought signatures an answer gave find their way back into the next request."""
    out = G.decode_response(answer([{"functionCall": {"name": "now", "args": {}}, "thoughtSignature": "c2ln"}]), "m")
    message = out["choices"][0]["message"]
    body = encode(messages=[{"role": "user", "content": "time?"}, message,
                            {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": '"noon"'}])
    assert body["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "now", "args": {}}, "thoughtSignature": "c2ln"}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "now", "response": {"output": "noon"}}}]}]


@pytest.mark.parametrize("reason, finish", [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("OTHER", "stop"), (None, "stop")])
def test_finish_reasons(reason: str | None, finish: str) -> None:
    assert G.decode_response(answer([{"text": "x"}], reason), "m")["choices"][0]["finish_reason"] == finish


def test_blocked_prompt_and_thoughts() -> None:
    out = G.decode_response({"promptFeedback": {"blockReason": "SAFETY"},
                             "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}}, "gemini-pro")
    assert out["model"] == "gemini-pro"
    assert out["choices"][0]["finish_reason"] == "content_filter" and out["choices"][0]["message"]["content"] == ""
    assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": 0, "total_tokens": 4}
    thinking = answer([{"text": "x"}], usageMetadata={"promptTokenCount": 3, "candidatesTokenCount": 2,
                                                      "thoughtsTokenCount": 8, "totalTokenCount": 13})
    assert G.decode_response(thinking, "m")["usage"] == {
        "prompt_tokens": 3, "completion_tokens": 10, "total_tokens": 13,
        "completion_tokens_details": {"reasoning_tokens": 8}}


# -- streams ------------------------------------------------------------------------------------
def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)


STREAM = sse(
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
     "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}, "modelVersion": "gemini-2.0-flash-001",
     "responseId": "r1"},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo, ünïcode"}]}, "index": 0}],
     "modelVersion": "gemini-2.0-flash-001", "responseId": "r1"},
    {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "now", "args": {}, "id": "g1"}}]}, "finishReason": "STOP", "index": 0}],
     "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 9, "totalTokenCount": 16},
     "modelVersion": "gemini-2.0-flash-001", "responseId": "r1"},
)


def strip(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for chunk in chunks:
        chunk.pop("created", None)
    return chunks


def run(data: bytes, pieces: list[bytes]) -> list[dict[str, Any]]:
    decoder = G.stream_decoder("gemini-2.0-flash")
    out: list[dict[str, Any]] = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    out.extend(decoder.close())
    return strip(out)


def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "r1", "object": "chat.completion.chunk", "model": "gemini-2.0-flash-001",
            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_stream_chunks() -> None:
    assert run(STREAM, [STREAM]) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo, ünïcode"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_0", "type": "function",
                               "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "g1", "type": "function",
                               "function": {"name": "now", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        chunk(None, usage={"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}),
    ]


def test_stream_cut_anywhere() -> None:
    whole = run(STREAM, [STREAM])
    assert run(STREAM, [STREAM[i:i + 1] for i in range(len(STREAM))]) == whole
    rng = random.Random(8)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 12)))
        pieces = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)])]
        assert run(STREAM, pieces) == whole


def test_stream_usage_after_the_finish_and_at_close() -> None:
    data = sse({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "MAX_TOKENS"}], "responseId": "r1",
                "modelVersion": "gemini-2.0-flash-001"},
               {"usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 2, "totalTokenCount": 3}})
    usage = chunk(None, usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    assert run(data, [data]) == [chunk({"role": "assistant", "content": ""}), chunk({"content": "x"}),
                                 chunk({}, "length"), usage]
    # the last event without its blank line, and no finish: usage still comes at close
    cut = b'data: {"candidates":[{"content":{"parts":[{"text":"y"}]}}],"responseId":"r1","modelVersion":' \
          b'"gemini-2.0-flash-001","usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":2,"totalTokenCount":3}}'
    assert run(cut, [cut]) == [chunk({"role": "assistant", "content": ""}), chunk({"content": "y"}), usage]


def test_stream_blocked_prompt_and_error() -> None:
    data = sse({"promptFeedback": {"blockReason": "SAFETY"}, "responseId": "r1", "modelVersion": "gemini-2.0-flash-001",
                "usageMetadata": {"promptTokenCount": 2, "totalTokenCount": 2}})
    assert run(data, [data])[1:] == [chunk({}, "content_filter"),
                                     chunk(None, usage={"prompt_tokens": 2, "completion_tokens": 0, "total_tokens": 2})]
    error = sse({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}})
    assert run(error, [error]) == [{"error": {"message": "Quota exceeded", "type": "rate_limit_error", "param": None,
                                              "code": "RESOURCE_EXHAUSTED"}}]


def test_stream_ignores_junk() -> None:
    data = b": keep-alive\r\n\r\ndata: not json\r\n\r\n" + STREAM
    assert run(data, [data]) == run(STREAM, [STREAM])


# -- errors -------------------------------------------------------------------------------------
def google_error(code: int, status: str, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "status": status, **extra}})


@pytest.mark.parametrize("status, body, expected_status, kind, code", [
    (400, google_error(400, "INVALID_ARGUMENT", "bad field"), 400, "invalid_request_error", "invalid_argument"),
    (400, google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                       details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]),
     401, "authentication_error", "invalid_api_key"),
    (403, google_error(403, "PERMISSION_DENIED", "no access"), 403, "permission_error", "permission_denied"),
    (404, google_error(404, "NOT_FOUND", "models/x is not found"), 404, "not_found_error", "not_found"),
    (429, google_error(429, "RESOURCE_EXHAUSTED", "quota"), 429, "rate_limit_error", "resource_exhausted"),
    (500, google_error(500, "INTERNAL", "oops"), 500, "api_error", "internal"),
    (503, google_error(503, "UNAVAILABLE", "overloaded"), 503, "api_error", "unavailable"),
    (504, google_error(504, "DEADLINE_EXCEEDED", "slow"), 504, "api_error", "deadline_exceeded"),
    (400, b"[" + google_error(400, "FAILED_PRECONDITION", "location") + b"]", 400, "invalid_request_error",
     "failed_precondition"),
])
def test_errors(status: int, body: bytes, expected_status: int, kind: str, code: str) -> None:
    got_status, got = G.decode_error(status, body)
    assert got_status == expected_status
    assert got["error"]["type"] == kind and got["error"]["code"] == code
    assert got["error"]["message"] == orjson.loads(body.strip(b"[]"))["error"]["message"]


def test_errors_not_from_google() -> None:
    assert G.decode_error(502, b"<html>bad gateway</html>") == (502, {"error": {
        "message": "<html>bad gateway</html>", "type": "api_error", "param": None, "code": None}})
    assert G.decode_error(500, b"")[1]["error"]["message"] == "status 500"
