"""Configuration of the ``request-termination`` plugin (Kong's fields and rules).

Validated when a ``/plugins`` entity is written; errors come back to the
Admin API client under ``config`` in Kong's schema-violation shape, e.g.
``{"config": {"status_code": "value should be between 100 and 599"}}`` or,
for the cross-field rules, ``{"config": {"@entity": ["message cannot be used
with content_type or body"]}}``.
"""
from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HEADER_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _present(value: str | None) -> bool:
    """Kong treats an empty string like an absent value in these rules."""
    return isinstance(value, str) and value != ""


class Config(BaseModel):
    """``config`` of a request-termination plugin entity."""

    # unknown keys are errors ("unknown field"), as in Kong's schemas
    model_config = ConfigDict(extra="forbid")

    status_code: int = Field(
        503,
        description="The status code of the response sent to the client: an integer between 100 and 599.",
        json_schema_extra={"minimum": 100, "maximum": 599},
    )
    message: str | None = Field(
        None,
        description=("Text of the default JSON response, sent as {\"message\": ...}. When unset, a standard "
                     "text for the status code is used (for 503: 'Service unavailable'). "
                     "Cannot be combined with body or content_type."),
    )
    body: str | None = Field(
        None,
        description="A raw response body sent as is, instead of the JSON message. Cannot be combined with message.",
    )
    content_type: str | None = Field(
        None,
        description="The Content-Type of the raw body; requires body.",
    )
    echo: bool = Field(
        False,
        description=("Answer with a JSON description of the request that was received (method, path, headers, "
                     "query, body, matched route and service) instead of a message. Meant for debugging; "
                     "combine it with trigger to inspect live traffic without disturbing it."),
    )
    trigger: str | None = Field(
        None,
        description=("A header name or query argument name. When set, requests are terminated only if they carry "
                     "that header or query argument; all other requests pass through untouched."),
    )

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: object) -> object:
        """An explicit null (``config.status_code=`` in a form) resets a field to its default."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None and k in ("status_code", "echo"))}
        return data

    @field_validator("status_code")
    @classmethod
    def _status_range(cls, value: int) -> int:
        if not 100 <= value <= 599:
            raise ValueError("value should be between 100 and 599")
        return value

    @field_validator("trigger")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not _HEADER_NAME.match(value):
            raise ValueError(f"bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'")
        return value

    @model_validator(mode="after")
    def _exclusive(self) -> "Config":
        if _present(self.message) and (_present(self.content_type) or _present(self.body)):
            raise ValueError("message cannot be used with content_type or body")
        if _present(self.content_type) and not _present(self.body):
            raise ValueError("content_type requires a body")
        if self.echo and (_present(self.content_type) or _present(self.body)):
            raise ValueError("echo cannot be used with content_type and body")
        return self
