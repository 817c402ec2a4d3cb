"""One module per provider, each with a table of what it maps (see ``base.py``).

To add a provider: write a module with a class following ``base.Provider``
(``openai.py`` for an OpenAI-shaped API, ``anthropic.py`` for one of its own),
and add an instance to ``PROVIDERS`` under the name targets use in ``provider``.
"""
from __future__ import annotations

from .anthropic import Anthropic
from .azure import Azure
from .base import Provider
from .bedrock import Bedrock
from .gemini import Gemini
from .openai import Mistral, OpenAI, OpenAICompatible

PROVIDERS: dict[str, Provider] = {p.name: p for p in (OpenAI(), Azure(), Anthropic(), Gemini(), Bedrock(), Mistral(),
                                                     OpenAICompatible())}


def provider_for(name: str | None) -> Provider | None:
    """The module for a target's ``provider`` (case-insensitive), None for other targets."""
    return PROVIDERS.get(name.lower()) if name else None
