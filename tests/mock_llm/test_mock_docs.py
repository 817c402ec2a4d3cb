"""docs/mock-llm.md stays in step with the code: headers, settings, command options."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from kong_py.cli import build_parser
from kong_py.mock_llm import HEADERS, Behaviour
from kong_py.mock_llm.server import PROVIDERS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "mock-llm.md").read_text()


def section(title: str) -> str:
    return DOC.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_every_control_header_is_documented_and_no_other() -> None:
    table = re.findall(r"^\| `(x-mock-[a-z-]+)` \|", section("Control headers"), re.MULTILINE)
    assert sorted(table) == sorted(HEADERS)


def test_every_setting_is_named() -> None:
    text = section("In tests")
    for f in dataclasses.fields(Behaviour):
        assert f"`{f.name}`" in text, f"docs/mock-llm.md, 'In tests', does not name the setting {f.name}"


def test_every_command_option_is_documented() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    command = sub.choices["mock-llm"]
    options = {o for a in command._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    table = set(re.findall(r"^\| `(--[a-z-]+)` \|", section("The command"), re.MULTILINE))
    assert table == options


def test_every_path_is_documented() -> None:
    endpoints = section("Endpoints")
    for provider in PROVIDERS:
        for _, path, _ in provider.routes:
            shown = re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: "{" + m[1] + "}", path)
            shown = shown.replace("{target}", "{model}:").replace("{model_id}", "{modelId}")
            assert shown.split("{")[0] in endpoints, f"{path} is not in the endpoint table"
