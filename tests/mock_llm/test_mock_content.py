"""What the mock answers (provider-neutral rules) and its AWS event-stream encoder."""
from __future__ import annotations

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from kong_py.mock_llm import Behaviour
from kong_py.mock_llm.content import (Prompt, Tool, answer, count_tokens, embedding, example_arguments, group,
                                      lorem, split_words)
from kong_py.mock_llm.eventstream import encode_message, event, exception


def test_split_words_keeps_every_character() -> None:
    for text in ["", "one", "  lead and trail  ", "a\nb\t c", "x  y"]:
        parts = split_words(text)
        assert "".join(parts) == text
        assert len(parts) == max(1, count_tokens(text))


def test_group_sizes() -> None:
    parts = list("abcdefg")
    assert group(parts, 3) == ["abc", "de", "fg"]
    assert group(parts, 1) == ["abcdefg"]
    assert group(parts, 20) == parts


def test_answer_rules() -> None:
    plain = Behaviour()
    prompt = Prompt(model="m", texts=["sys", "hello you"], last_user="hello you")
    reply = answer(prompt, plain, "id_")
    assert (reply.text, reply.finish, reply.prompt_tokens, reply.completion_tokens) == ("hello you", "stop", 3, 2)
    assert answer(Prompt(model="m"), plain, "id_").text == lorem(8)  # nothing to echo
    assert answer(prompt, Behaviour(words=3), "id_").text == "lorem ipsum dolor"
    assert answer(prompt, Behaviour(reply="fixed"), "id_").text == "fixed"
    tool_result = Prompt(model="m", tool_result="42", tools=[Tool("t")])
    assert answer(tool_result, plain, "id_").text == "Tool result: 42"


def test_tool_choice_rules() -> None:
    tools = [Tool("first", {"type": "object", "properties": {"n": {"type": "number"}}}), Tool("second")]
    ask = Prompt(model="m", last_user="please CALL TOOL second now", tools=tools)
    call = answer(ask, Behaviour(), "call_").tool_call
    assert call is not None and call.name == "second" and call.id.startswith("call_")
    vague = Prompt(model="m", last_user="call tool", tools=tools)
    assert answer(vague, Behaviour(), "x").tool_call.name == "first"
    assert answer(vague, Behaviour(), "x").tool_call.arguments == {"n": 1.5}
    assert answer(Prompt(model="m", last_user="call tool", tools=tools, tool_choice="none"),
                  Behaviour(), "x").tool_call is None
    assert answer(Prompt(model="m", tools=tools, tool_choice="any"), Behaviour(), "x").tool_call.name == "first"
    forced = answer(Prompt(model="m", tools=tools), Behaviour(tool="second", tool_args={"k": "v"}), "x")
    assert forced.tool_call is not None
    assert (forced.tool_call.name, forced.tool_call.arguments) == ("second", {"k": "v"})
    assert forced.finish == "tool"
    # a header cannot conjure tools the request did not offer
    assert answer(Prompt(model="m"), Behaviour(tool="second"), "x").tool_call is None


def test_example_arguments() -> None:
    schema = {"type": "object", "properties": {
        "s": {"type": "string"}, "i": {"type": "integer"}, "b": {"type": "boolean"},
        "e": {"enum": ["x", "y"]}, "a": {"type": "array", "items": {"type": "integer"}},
        "o": {"type": "object", "properties": {"deep": {"type": ["null", "string"]}}},
        "g": {"type": "STRING"}}}
    assert example_arguments(schema) == {"s": "mock", "i": 1, "b": True, "e": "x", "a": [1],
                                         "o": {"deep": "mock"}, "g": "mock"}
    assert example_arguments({}) == {}


def test_stop_and_length() -> None:
    prompt = Prompt(model="m", last_user="a b c d", stop=["c", "b"], max_tokens=10)
    reply = answer(prompt, Behaviour(), "x")
    assert (reply.text, reply.finish, reply.stop_sequence) == ("a ", "stop_sequence", "b")
    reply = answer(Prompt(model="m", last_user="a b c d", max_tokens=2), Behaviour(), "x")
    assert (reply.text, reply.finish, reply.completion_tokens) == ("a b", "length", 2)


def test_stream_chunks_pad_to_the_count() -> None:
    prompt = Prompt(model="m", last_user="a b", stream=True)
    reply = answer(prompt, Behaviour(chunks=4), "x")
    assert reply.pieces() == ["a", " b", " lorem", " ipsum"] and reply.completion_tokens == 4
    assert answer(Prompt(model="m", last_user="a b c d e", stream=True), Behaviour(chunks=2), "x").pieces() == [
        "a b c", " d e"]


def test_embedding_is_deterministic_and_unit_length() -> None:
    first, again, other = embedding("kong", 32), embedding("kong", 32), embedding("gnok", 32)
    assert first == again and first != other and len(first) == 32
    assert abs(sum(v * v for v in first) - 1) < 1e-4


@pytest.mark.parametrize("headers, payload", [
    ({}, b""),
    ({":event-type": "contentBlockDelta", ":content-type": "application/json"}, b'{"a":1}'),
    ({"x": "é" * 300}, bytes(range(256)) * 40),
])
def test_event_stream_frames_decode_with_botocore(headers: dict[str, str], payload: bytes) -> None:
    buffer = EventStreamBuffer()
    raw = encode_message(headers, payload)
    buffer.add_data(raw[:7])  # arrives in pieces
    buffer.add_data(raw[7:] + raw)
    messages = list(buffer)
    assert len(messages) == 2
    for message in messages:
        assert dict(message.headers) == headers and message.payload == payload
        assert message.prelude.total_length == len(raw)


def test_event_stream_checksums_are_checked() -> None:
    raw = bytearray(event("messageStop", {"stopReason": "end_turn"}))
    raw[-6] ^= 0xFF  # a payload byte
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(raw))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


def test_event_stream_exception_frame() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(exception("throttlingException", "slow down"))
    [message] = list(buffer)
    response = message.to_response_dict()
    assert response["status_code"] == 400 and message.headers[":exception-type"] == "throttlingException"
