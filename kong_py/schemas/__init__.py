"""Entity schemas (pydantic) with Kong's defaults, rules and error messages."""
from .base import SchemaError, schema_error
from .plugin import Plugin
from .route import Route
from .service import Service
from .target import Target
from .upstream import Upstream

__all__ = ["SchemaError", "schema_error", "Plugin", "Route", "Service", "Target", "Upstream"]
