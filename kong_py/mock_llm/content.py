"""What the mock answers, independent of any provider's wire format.

Each provider module turns its request into a ``Prompt``; ``answer`` decides the reply
(text or a tool call) from it and the request's ``Behaviour``; the provider module renders
the ``Reply`` in its own shape. Answers are deterministic so tests can assert on them, and
token counts are whitespace-separated words everywhere, so a translated request reports
the same usage whichever provider answered it.
"""
from __future__ import annotations

import base64
import hashlib
import re
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from kong_py.mock_llm.behaviour import Behaviour

LOREM = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua"
).split()
FALLBACK_WORDS = 8           # reply length when there is nothing to echo
TOOL_ARGUMENT_CHUNKS = 3     # argument pieces of a streamed tool call when chunks is unset
CALL_TOOL = "call tool"      # a last user message containing this asks for a tool call

Finish = Literal["stop", "length", "stop_sequence", "tool"]


def lorem(count: int) -> str:
    """``count`` words of lorem ipsum, always the same ones."""
    return " ".join(LOREM[i % len(LOREM)] for i in range(count))


def count_tokens(text: str) -> int:
    """The mock's token count: whitespace-separated words."""
    return len(text.split())


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:length]


@dataclass
class Tool:
    name: str
    schema: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prompt:
    """The provider-neutral view of a chat request."""

    model: str
    texts: list[str] = field(default_factory=list)   # all text of the conversation (usage)
    last_user: str = ""                 # text of the last message when it is a user's text
    tool_result: str | None = None      # the conversation ends with this tool result
    tools: list[Tool] = field(default_factory=list)
    tool_choice: str | None = None      # None: auto; "none"; "any"; or a tool name
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False

    @property
    def prompt_tokens(self) -> int:
        return sum(count_tokens(t) for t in self.texts)


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return orjson.dumps(self.arguments).decode()


@dataclass
class Reply:
    text: str
    tool_call: ToolCall | None
    finish: Finish
    stop_sequence: str | None
    prompt_tokens: int
    completion_tokens: int
    chunks: int | None = None           # content chunks asked for (streaming)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def pieces(self) -> list[str]:
        """The content chunks of a streamed answer; joined they give the reply exactly."""
        if self.tool_call is not None:
            return split_evenly(self.tool_call.arguments_json, self.chunks or TOOL_ARGUMENT_CHUNKS)
        words = split_words(self.text)
        if self.chunks is None:
            return words
        return group(words, self.chunks)


def split_words(text: str) -> list[str]:
    """Words with their leading whitespace (so pieces join back into ``text``)."""
    parts = re.findall(r"\s*\S+", text)
    if not parts:
        return [text]
    parts[-1] += text[len("".join(parts)):]
    return parts


def group(parts: list[str], count: int) -> list[str]:
    """``parts`` joined into ``count`` pieces of near-equal size (never more pieces than parts)."""
    count = max(1, min(count, len(parts)))
    size, extra = divmod(len(parts), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        out.append("".join(parts[start:end]))
        start = end
    return out


def split_evenly(text: str, count: int) -> list[str]:
    """``text`` cut into ``count`` pieces of characters (fewer when it is shorter)."""
    return group(list(text), count) if text else [""]


def answer(prompt: Prompt, controls: Behaviour, tool_id_prefix: str) -> Reply:
    """The deterministic reply to ``prompt``: see docs/mock-llm.md, "What it answers"."""
    tool = _tool_to_call(prompt, controls)
    if tool is not None:
        args = controls.tool_args if controls.tool_args is not None else example_arguments(tool.schema)
        call = ToolCall(new_id(tool_id_prefix), tool.name, args)
        return Reply("", call, "tool", None, prompt.prompt_tokens,
                     max(1, count_tokens(call.arguments_json)), controls.chunks)
    text = _text(prompt, controls)
    if prompt.stream and controls.chunks is not None and count_tokens(text) < controls.chunks:
        # so a streamed answer has exactly the chunks asked for
        missing = controls.chunks - count_tokens(text)
        text = f"{text} {lorem(missing)}" if text.strip() else lorem(missing)
    finish: Finish = "stop"
    stop_sequence = None
    cut = [(text.find(s), s) for s in prompt.stop if s and s in text]
    if cut:
        index, stop_sequence = min(cut)
        text, finish = text[:index], "stop_sequence"
    if prompt.max_tokens is not None and count_tokens(text) > prompt.max_tokens:
        text = "".join(split_words(text)[:prompt.max_tokens]) if prompt.max_tokens else ""
        finish, stop_sequence = "length", None
    return Reply(text, None, finish, stop_sequence, prompt.prompt_tokens, count_tokens(text), controls.chunks)


def _text(prompt: Prompt, controls: Behaviour) -> str:
    if controls.reply is not None:
        return controls.reply
    if prompt.tool_result is not None:
        return f"Tool result: {prompt.tool_result}"
    if controls.words is not None:
        return lorem(controls.words)
    if prompt.last_user.strip():
        return prompt.last_user
    return lorem(FALLBACK_WORDS)


def _tool_to_call(prompt: Prompt, controls: Behaviour) -> Tool | None:
    """Which tool the reply calls, if any (only ever one the request could offer)."""
    if not prompt.tools or prompt.tool_choice == "none":
        return None
    if controls.tool is not None:
        return _find(prompt.tools, controls.tool) or Tool(controls.tool)
    if prompt.tool_result is not None:
        return None
    if prompt.tool_choice == "any":
        return prompt.tools[0]
    if prompt.tool_choice is not None:
        return _find(prompt.tools, prompt.tool_choice) or prompt.tools[0]
    text = prompt.last_user.lower()
    if CALL_TOOL not in text:
        return None
    after = text.split(CALL_TOOL, 1)[1].split()
    named = _find(prompt.tools, after[0].strip(".,:;!?\"'`")) if after else None
    return named or prompt.tools[0]


def _find(tools: list[Tool], name: str) -> Tool | None:
    return next((t for t in tools if t.name.lower() == name.lower()), None)


def example_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments that fit a JSON schema of parameters: every property, a fixed value by type."""
    value = _example(schema)
    return value if isinstance(value, dict) else {}


def _example(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "mock"
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        kind = kind.lower()  # Gemini writes OBJECT, STRING...
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {name: _example(sub) for name, sub in props.items()}
    if kind == "array":
        return [_example(schema.get("items") or {"type": "string"})]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind or "", "mock")


def embedding(text: str, dimensions: int) -> list[float]:
    """A unit vector derived from ``text`` alone (same text, same vector)."""
    raw = b""
    counter = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dimensions}I", raw[: 4 * dimensions])]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in values]


def embedding_base64(vector: list[float]) -> str:
    """OpenAI's ``encoding_format: base64``: little-endian float32s, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def text_of(content: Any) -> str:
    """The text of a message content in OpenAI's or Anthropic's shape (string or parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "tool_result":
                    texts.append(text_of(part.get("content")))
        return " ".join(t for t in texts if t)
    if isinstance(content, dict):
        text = content.get("text")
        return text if isinstance(text, str) else ""
    return ""
