"""The plugin documentation stays in sync with the code (as datasette's tests/test_docs.py)."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pluggy
import pytest

from kong_py import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"
HOOK_HEADING = re.compile(r"^#{2,4} +`?([a-z_]+)\(([^)]*)\)`?\s*$", re.MULTILINE)


def hook_specs() -> dict[str, inspect.Signature]:
    """Every hook declared in kong_py/hookspecs.py, as pluggy sees it."""
    manager = pluggy.PluginManager("kong_py")
    manager.add_hookspecs(hookspecs)
    names = [name for name in dir(manager.hook) if not name.startswith("_")]
    return {name: inspect.signature(getattr(hookspecs, name)) for name in names}


def documented_hooks() -> dict[str, list[str]]:
    """``### name(arg, ...)`` headings of docs/plugin_hooks.md."""
    text = (DOCS / "plugin_hooks.md").read_text()
    return {m[1]: [a.strip() for a in m[2].split(",") if a.strip()] for m in HOOK_HEADING.finditer(text)}


def test_hookspecs_found():
    specs = hook_specs()
    assert {"access", "balancer", "header_filter", "body_filter", "log"} <= set(specs)
    assert set(hookspecs.PHASES) <= set(specs)


@pytest.mark.parametrize("hook", sorted(hook_specs()))
def test_every_hook_is_documented(hook):
    documented = documented_hooks()
    assert hook in documented, f"hook '{hook}' of kong_py/hookspecs.py has no '### {hook}(...)' section in docs/plugin_hooks.md"
    assert documented[hook] == list(hook_specs()[hook].parameters), (
        f"docs/plugin_hooks.md documents {hook}({', '.join(documented[hook])}); "
        f"the spec is {hook}{hook_specs()[hook]}")


def test_no_documented_hook_is_missing_from_the_specs():
    extra = set(documented_hooks()) - set(hook_specs())
    assert not extra, f"docs/plugin_hooks.md documents hooks that do not exist: {sorted(extra)}"


@pytest.mark.parametrize("hook", sorted(hook_specs()))
def test_every_hookspec_has_a_docstring(hook):
    assert inspect.getdoc(getattr(hookspecs, hook)), f"hookspec '{hook}' has no docstring"


@pytest.mark.parametrize("doc", ["plugin_hooks.md", "plugins.md"])
def test_python_examples_are_valid(doc):
    """Every ```python block in the plugin docs at least parses."""
    text = (DOCS / doc).read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert blocks, f"{doc} has no python examples"
    for block in blocks:
        ast.parse(block)


def test_plugin_docs_name_the_handler_attributes():
    text = (DOCS / "plugins.md").read_text()
    for attribute in ("name", "PRIORITY", "VERSION", "Config", "ALWAYS_ON"):
        assert f"`{attribute}`" in text, f"docs/plugins.md does not document `{attribute}`"
    assert 'entry-points."kong_py.plugins"' in text


README = DOCS.parent / "README.md"
PLACEHOLDER = re.compile(r"\{[^}]*\}")


def readme_admin_endpoints() -> set[str]:
    """The paths of the table under README's "The Admin API", placeholders as ``{}``.

    ``.../unhealthy`` after ``/upstreams/{u}/targets/{t}/healthy`` in a cell stands for the
    same path with its last segment replaced."""
    section = README.read_text().split("\n## The Admin API\n", 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break  # the end of the first table
    paths: set[str] = set()
    for row in rows:
        previous = None
        for code in re.findall(r"`([^`]+)`", row.split("|")[1]):
            if code.startswith(".../") and previous:
                code = previous.rsplit("/", 1)[0] + code[3:]
            if code.startswith("/"):
                previous = code
                paths.add(PLACEHOLDER.sub("{}", code))
    return paths


async def test_readme_lists_every_admin_endpoint(gateway) -> None:
    """Every path the Admin API serves (the core's and the bundled plugins') has a row in the
    README's endpoint table, and the table names no path that does not exist."""
    from kong_py.admin.app import create_admin_app

    served = {PLACEHOLDER.sub("{}", route.path) for route in create_admin_app(gateway.worker).routes}
    documented = readme_admin_endpoints()
    assert "/upstreams/{}/targets/{}/drain" in served and "/upstreams/{}/health" in served
    missing = sorted(served - documented)
    assert not missing, f"README.md's Admin API table does not list: {missing}"
    unknown = sorted(documented - served)
    assert not unknown, f"README.md's Admin API table lists paths that are not served: {unknown}"
