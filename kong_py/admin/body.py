"""Admin API request body decoding, mirroring Kong's ``kong/api/arguments.lua``.

Form bodies (urlencoded and multipart) use Kong's flat-key syntax::

    a.b.c=v         -> {"a": {"b": {"c": "v"}}}
    x[]=a&x[]=b     -> {"x": ["a", "b"]}        (also x=a&x=b)
    x[2]=b&x[1]=a   -> {"x": ["a", "b"]}        (1-based, ordered by index)
    h[x-foo]=v      -> {"h": {"x-foo": "v"}}    (non-numeric bracket = map key)
    t[1].host=h     -> {"t": [{"host": "h"}]}

Values stay strings and ``""`` becomes ``None``; typing (numbers, booleans,
single value -> one-element array) is the schema layer's job, as in Kong's
``infer_value``.  JSON bodies are returned untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import create_form_parser
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

__all__ = ["BodyError", "decode_pairs", "parse_body", "read_body"]

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
MAX_PART_SIZE = 10 * 1024 * 1024  # Kong's Admin API client_max_body_size is 10m
MAX_DEPTH = 32  # bounds nesting so hostile keys cannot exhaust the stack

# A path segment: str = map key, int = 1-based array index, None = append ("[]").
Segment = str | int | None

# %5B...%5D left in a key (double-encoded clients) means brackets, as in Kong.
_ESCAPED_BRACKETS = re.compile(r"%5B(.*?)%5D", re.IGNORECASE)
# "param[k1][k2]...": the first character always belongs to the param name.
_BRACKETED = re.compile(r"(.[^\[]*)((?:\[[^\]]*\])+)", re.DOTALL)
_BRACKET = re.compile(r"\[([^\]]*)\]")


class BodyError(Exception):
    """Raised for a body the Admin API must refuse; carries the HTTP status and Kong's message."""

    status: int
    message: str

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Array(dict[int, Any]):
    """A sparse 1-based array under construction (index -> item); tracks its end for O(1) appends."""

    last = 0

    def __setitem__(self, index: int, value: Any) -> None:
        super().__setitem__(index, value)
        self.last = max(self.last, index)

    def append(self, value: Any) -> None:
        self[self.last + 1] = value


def _names(key: str) -> list[str]:
    """Split on dots, except dots inside a closed "[...]" ("a[b.c].d" -> ["a[b.c]", "d"]).

    A name's first character never opens a bracket, and empty names ("a..b") are
    dropped, as in Kong.  Linear time, so hostile keys stay cheap.
    """
    names: list[str] = []
    start = i = 0
    last_close = key.rfind("]")
    while i < len(key):
        if key[i] == ".":
            if i > start:
                names.append(key[start:i])
            start = i = i + 1
        elif key[i] == "[" and i > start and i < last_close:
            i = key.index("]", i) + 1
        else:
            i += 1
    if start < len(key):
        names.append(key[start:])
    return names


def _shown(key: str) -> str:
    """The key as quoted in error messages, cut short so huge keys are not echoed back."""
    return repr(key if len(key) <= 80 else key[:77] + "...")


def _unescape_brackets(key: str) -> str:
    """Turn "%5B...%5D" left in a key into "[...]", as Kong's decoder does."""
    end = key.lower().rfind("%5d")
    if end < 0:  # nothing can match; also keeps unclosed "%5B" runs linear
        return key
    return _ESCAPED_BRACKETS.sub(r"[\1]", key[: end + 3]) + key[end + 3 :]


def _key_path(key: str) -> list[Segment]:
    """Split a flat form key into path segments, Kong-style."""
    if not key or key.startswith(".") or key.endswith("."):
        raise BodyError(400, f"invalid argument name {_shown(key)}")
    path: list[Segment] = []
    for name in _names(_unescape_brackets(key)):
        match = _BRACKETED.fullmatch(name)
        if not match:  # no (well-formed) brackets: the whole name is a plain key
            path.append(name)
            continue
        path.append(match[1])
        for inner in _BRACKET.findall(match[2]):
            if inner == "":
                path.append(None)
            elif inner.isascii() and inner.isdigit():
                if len(inner) > 9 or int(inner) == 0:
                    message = f"invalid argument name {_shown(key)}: array indexes go from 1 to 999999999"
                    raise BodyError(400, message)
                path.append(int(inner))
            else:
                path.append(inner)
    if len(path) > MAX_DEPTH:
        raise BodyError(400, f"invalid argument name {_shown(key)}: nested too deeply")
    return path


def _conflict(key: str) -> BodyError:
    return BodyError(400, f"invalid argument {_shown(key)}: conflicts with another argument")


def _child(node: dict[Any, Any], seg: Segment, want_array: bool, key: str) -> dict[Any, Any]:
    """Return (creating if needed) the container at ``node[seg]``."""
    if seg is None:
        seg = 1  # Kong: "x[].y" addresses the first element
    if seg not in node:
        node[seg] = _Array() if want_array else {}
    elif isinstance(node[seg], dict):  # an existing map or array
        if isinstance(node[seg], _Array) != want_array:
            raise _conflict(key)
    elif want_array:  # "a=1&a[]=2": the scalar becomes the first item
        items = _Array()
        items.append(node[seg])
        node[seg] = items
    else:
        raise _conflict(key)
    return node[seg]


def _set(node: dict[Any, Any], seg: Segment, value: str | None, key: str) -> None:
    """Store a leaf value; a repeated key collects its values into an array."""
    if seg is None:
        node.append(value)  # type: ignore[attr-defined]  # "[]" only ever follows an array
    elif seg not in node:
        node[seg] = value
    elif isinstance(node[seg], _Array):
        node[seg].append(value)
    elif isinstance(node[seg], dict):
        raise _conflict(key)
    else:
        items = _Array()
        items.append(node[seg])
        items.append(value)
        node[seg] = items


def _finish(node: Any) -> Any:
    if isinstance(node, _Array):
        return [_finish(node[i]) for i in sorted(node)]
    if isinstance(node, dict):
        return {k: _finish(v) for k, v in node.items()}
    return node


def decode_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Turn flat form keys into Kong's nested structure."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        path = _key_path(key)
        node: dict[Any, Any] = root
        for seg, nxt in zip(path, path[1:]):
            node = _child(node, seg, not isinstance(nxt, str), key)
        _set(node, path[-1], value if value != "" else None, key)
    return _finish(root)


def _media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def _multipart_pairs(content_type: str, body: bytes) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []

    def on_field(field: Any) -> None:
        pairs.append((field.field_name.decode(), (field.value or b"").decode("utf-8", "replace")))

    def on_file(file: Any) -> None:
        file.file_object.seek(0)
        pairs.append((file.field_name.decode(), file.file_object.read().decode("utf-8", "replace")))
        file.close()

    try:
        parser = create_form_parser({"Content-Type": content_type.encode("latin-1")}, on_field, on_file)
        parser.write(body)
        parser.finalize()
    except (FormParserError, UnicodeError) as exc:
        raise BodyError(400, "Cannot parse multipart/form-data body") from exc
    return pairs


def parse_body(content_type: str | None, body: bytes) -> dict[str, Any]:
    """Decode a raw body by content type (sync, pure)."""
    if not body:
        return {}
    media = _media_type(content_type)
    if media == "application/json" or (
        media is not None and media.startswith("application/") and media.endswith("+json")
    ):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise BodyError(400, "Cannot parse JSON body")
        return data
    if media == FORM:
        return decode_pairs(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if media == MULTIPART:
        return decode_pairs(_multipart_pairs(content_type or "", body))
    raise BodyError(415, "Unsupported Media Type")


async def read_body(request: Request) -> dict[str, Any]:
    """Read and decode a Starlette request body (also handles multipart via request.form())."""
    content_type = request.headers.get("content-type")
    body = await request.body()
    if not body or _media_type(content_type) != MULTIPART:
        return parse_body(content_type, body)
    try:
        form = await request.form(max_part_size=MAX_PART_SIZE)
    except (MultiPartException, HTTPException) as exc:
        raise BodyError(400, "Cannot parse multipart/form-data body") from exc
    pairs: list[tuple[str, str]] = []
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                value = (await value.read()).decode("utf-8", "replace")
            pairs.append((name, value))
    finally:
        await form.close()
    return decode_pairs(pairs)
