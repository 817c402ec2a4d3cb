"""Tool definitions shared by the mock LLM tests."""
from __future__ import annotations

from typing import Awaitable, Callable

from kong_py.mock_llm import MockLLM

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                                                    "days": {"type": "integer"}},
                   "required": ["city"]}}}
CLAUDE_WEATHER_TOOL = {"name": "get_weather", "description": "The weather in a city",
                       "input_schema": WEATHER_TOOL["function"]["parameters"]}
WEATHER_ARGS = {"city": "mock", "unit": "celsius", "days": 1}


#: the ``start_mock_llm`` fixture: ``await start_mock_llm(**settings)``
StartMock = Callable[..., Awaitable[MockLLM]]
