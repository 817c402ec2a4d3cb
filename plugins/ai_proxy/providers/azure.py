"""Azure OpenAI: OpenAI's format, with the deployment in the path and the API
version in the query.

| OpenAI | Azure OpenAI |
|---|---|
| ``model`` | the deployment: ``/openai/deployments/<model>/chat/completions`` (map client model names to deployment names with the target's ``model_aliases``) |
| | ``?api-version=`` the target's ``api_version``, else ``API_VERSION`` |
| ``Authorization: Bearer`` | ``api-key: <key>`` or an Entra ID token (the credentials plugin) |
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .openai import OpenAI

#: a current generally available version of the data-plane API
API_VERSION = "2024-10-21"


class Azure(OpenAI):
    name = "azure"
    host = None  # each resource has its own host: <resource>.openai.azure.com

    def endpoint(self, kind: str, model: str, stream: bool, target: Any) -> tuple[str, str]:
        version = (target.entity.get("api_version") if target.entity else None) or API_VERSION
        query = f"api-version={quote(version, safe='')}"
        if kind == "chat" and target.path:
            return target.path, query
        operation = "chat/completions" if kind == "chat" else "embeddings"
        return f"/openai/deployments/{quote(model, safe='')}/{operation}", query
