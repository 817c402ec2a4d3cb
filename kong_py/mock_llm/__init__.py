"""A mock LLM server speaking OpenAI, Azure OpenAI, Anthropic, Gemini and Bedrock Converse.

Tests and benchmarks point a gateway (or an SDK) at it instead of a paid provider. See
docs/mock-llm.md for the endpoints, what it answers, and the ``x-mock-*`` control headers.
"""
from kong_py.mock_llm.behaviour import HEADERS, Behaviour, ControlError
from kong_py.mock_llm.recording import RecordedRequest
from kong_py.mock_llm.server import MockLLM, is_loopback, run

__all__ = ["HEADERS", "Behaviour", "ControlError", "MockLLM", "RecordedRequest", "is_loopback", "run"]
