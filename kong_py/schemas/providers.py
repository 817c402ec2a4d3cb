"""Default endpoints of well-known LLM providers.

A target may name only its ``provider`` (the seeds' example does): it then
points at that provider's public API over HTTPS.
"""
from __future__ import annotations

PROVIDER_HOSTS: dict[str, str] = {
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
    "mistral": "api.mistral.ai",
    "groq": "api.groq.com",
    "cohere": "api.cohere.com",
    "deepseek": "api.deepseek.com",
    "gemini": "generativelanguage.googleapis.com",
    "google": "generativelanguage.googleapis.com",
    "together": "api.together.xyz",
    "fireworks": "api.fireworks.ai",
    "openrouter": "openrouter.ai",
    "xai": "api.x.ai",
    "perplexity": "api.perplexity.ai",
}
