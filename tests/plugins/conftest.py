"""Fixtures for plugin tests: install a throw-away third-party plugin distribution."""
from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path
from typing import Callable

import pytest

from kong_py.plugin_manager import ENTRY_POINT_GROUP


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``install_plugin(name, source, target="Handler")`` writes a package and its
    ``*.dist-info/entry_points.txt`` registering ``name`` in the ``kong_py.plugins``
    group, and puts them on ``sys.path``, as ``pip install`` of a third-party plugin
    would. ``{name}`` in ``source`` is replaced by the plugin name (``{{``/``}}``
    for literal braces). Returns the module name (unique per call)."""
    site = tmp_path / "site"

    def install(name: str, source: str, target: str = "Handler") -> str:
        module = f"kp_test_plugin_{uuid.uuid4().hex[:8]}"
        (site / module).mkdir(parents=True)
        (site / module / "__init__.py").write_text(textwrap.dedent(source.format(name=name)))
        info = site / f"{module}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.0.1\n")
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {module}:{target}\n")
        if str(site) not in sys.path:
            monkeypatch.syspath_prepend(str(site))
        else:
            import importlib
            importlib.invalidate_caches()
        monkeypatch.delitem(sys.modules, module, raising=False)
        return module

    return install
