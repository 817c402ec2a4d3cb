"""The prefix holds credentials (the SQLite database) and the node's shared state:
only its owner may read them."""
from __future__ import annotations

import stat
from pathlib import Path
from typing import Any


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_prefix_database_and_node_state_are_private(start_gateway: Any, tmp_path: Path) -> None:
    prefix = tmp_path / "fresh" / "servroot"
    gateway = await start_gateway(prefix=prefix)
    status, _ = await gateway.admin("POST", "/upstreams", {"name": "u", "targets": [
        {"target": "127.0.0.1:9", "credentials": {"header_name": "x-api-key", "header_value": "secret-" * 4}}]})
    assert status == 201
    assert mode(prefix) == 0o700
    files = [prefix / "gateway.db", prefix / "gateway.db-wal", prefix / "gateway.db-shm"]
    for path in files:
        assert path.exists(), path
        assert mode(path) == 0o600, path
    assert mode(prefix / "node_state") == 0o700
    for path in (prefix / "node_state").iterdir():
        assert mode(path) & 0o077 == 0, path


async def test_a_database_made_world_readable_before_is_tightened(start_gateway: Any, tmp_path: Path) -> None:
    prefix = tmp_path / "old"
    prefix.mkdir()
    db = prefix / "gateway.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    await start_gateway(prefix=prefix)
    assert mode(db) == 0o600
