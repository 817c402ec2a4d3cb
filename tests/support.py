"""Helpers shared by tests (imported as ``support``; fixtures live in conftest.py)."""
from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def form_pairs(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Encode a nested dict the way `curl --data` users write Kong form keys."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            pairs.extend(form_pairs(value, name))
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    raise ValueError("lists of records: use JSON")
                pairs.append((f"{name}[]", _text(item)))
        else:
            pairs.append((name, _text(value)))
    return pairs


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until true (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
