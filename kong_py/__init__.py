"""kong_py: a Kong-style, plugin-based API and AI gateway."""

__version__ = "0.1.0"
