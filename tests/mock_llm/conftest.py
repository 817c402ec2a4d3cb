"""SDK clients pointed at the ``mock_llm`` fixture (tests/conftest.py)."""
from __future__ import annotations

from typing import AsyncIterator

import aiohttp
import anthropic
import openai
import pytest

from kong_py.mock_llm import MockLLM

@pytest.fixture
async def oai(mock_llm: MockLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official OpenAI SDK on the mock (no retries, short timeout)."""
    client = openai.AsyncOpenAI(base_url=mock_llm.url + "/v1", api_key="sk-test-key", max_retries=0, timeout=10)
    yield client
    await client.close()


@pytest.fixture
async def claude(mock_llm: MockLLM) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The official Anthropic SDK on the mock (no retries, short timeout)."""
    client = anthropic.AsyncAnthropic(base_url=mock_llm.url, api_key="sk-ant-test-key", max_retries=0, timeout=10)
    yield client
    await client.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session
