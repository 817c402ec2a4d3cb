"""Tables. Each row keeps the whole entity in ``data`` plus the columns that are
looked up, joined or kept unique, so the entity schema stays the one source of
truth for fields and the tables stay the same on SQLite and PostgreSQL."""
from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, String, UniqueConstraint
from sqlmodel import Field, SQLModel


def _data() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ServiceRow(SQLModel, table=True):
    __tablename__ = "services"
    id: str = Field(primary_key=True, max_length=36)
    name: str | None = Field(default=None, unique=True, index=True)
    created_at: int = Field(index=True)
    data: dict = _data()


class RouteRow(SQLModel, table=True):
    __tablename__ = "routes"
    id: str = Field(primary_key=True, max_length=36)
    name: str | None = Field(default=None, unique=True, index=True)
    service_id: str | None = Field(default=None, sa_column=Column(String(36), ForeignKey("services.id"), index=True))
    created_at: int = Field(index=True)
    data: dict = _data()


class UpstreamRow(SQLModel, table=True):
    __tablename__ = "upstreams"
    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(unique=True, index=True)
    created_at: int = Field(index=True)
    data: dict = _data()


class TargetRow(SQLModel, table=True):
    __tablename__ = "targets"
    __table_args__ = (UniqueConstraint("upstream_id", "target", name="targets_upstream_target_key"),)
    id: str = Field(primary_key=True, max_length=36)
    upstream_id: str = Field(sa_column=Column(String(36), ForeignKey("upstreams.id", ondelete="CASCADE"),
                                              index=True, nullable=False))
    target: str
    created_at: float = Field(index=True)
    data: dict = _data()


class PluginRow(SQLModel, table=True):
    __tablename__ = "plugins"
    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(index=True)
    instance_name: str | None = Field(default=None, unique=True)
    #: name|service|route|consumer: one plugin of a name per scope, as in Kong
    scope_key: str = Field(unique=True)
    service_id: str | None = Field(default=None, sa_column=Column(String(36), ForeignKey("services.id", ondelete="CASCADE"), index=True))
    route_id: str | None = Field(default=None, sa_column=Column(String(36), ForeignKey("routes.id", ondelete="CASCADE"), index=True))
    created_at: int = Field(index=True)
    data: dict = _data()


class TargetHealthRow(SQLModel, table=True):
    """Health set by hand through the Admin API, shared by every worker and node.

    ``seq`` grows with every change so workers fetch only what is new.
    """

    __tablename__ = "target_health"
    target_id: str = Field(sa_column=Column(String(36), ForeignKey("targets.id", ondelete="CASCADE"),
                                            primary_key=True))
    healthy: bool
    seq: int = Field(index=True)


class MetaRow(SQLModel, table=True):
    """Key/value facts about the store; ``config_version`` grows with every write."""

    __tablename__ = "gateway_meta"
    key: str = Field(primary_key=True)
    value: int = 0


TABLES: dict[str, type[SQLModel]] = {
    "services": ServiceRow,
    "routes": RouteRow,
    "upstreams": UpstreamRow,
    "targets": TargetRow,
    "plugins": PluginRow,
}


def row_columns(kind: str, entity: dict[str, Any]) -> dict[str, Any]:
    """The indexed columns of a row, derived from the entity."""
    columns: dict[str, Any] = {"id": entity["id"], "created_at": entity["created_at"]}
    if kind in ("services", "routes", "upstreams"):
        columns["name"] = entity.get("name")
    if kind == "routes":
        columns["service_id"] = (entity.get("service") or {}).get("id")
    elif kind == "targets":
        columns["upstream_id"] = entity["upstream"]["id"]
        columns["target"] = entity["target"]
    elif kind == "plugins":
        service = (entity.get("service") or {}).get("id")
        route = (entity.get("route") or {}).get("id")
        consumer = (entity.get("consumer") or {}).get("id")
        columns.update(name=entity["name"], instance_name=entity.get("instance_name"),
                       service_id=service, route_id=route,
                       scope_key=f"{entity['name']}|{service or ''}|{route or ''}|{consumer or ''}")
    return columns
