"""The Plugin entity: one plugin configured globally, per service or per route."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from .base import Schema, Tags, as_list


class Plugin(Schema):
    name: str
    instance_name: str | None = None
    config: dict[str, Any] | None = None
    enabled: bool = True
    protocols: Annotated[list[Literal["grpc", "grpcs", "http", "https"]], BeforeValidator(as_list)] = [
        "grpc", "grpcs", "http", "https"]
    service: dict[str, Any] | None = None
    route: dict[str, Any] | None = None
    consumer: dict[str, Any] | None = None
    tags: Tags = None
