"""Tests for kong_py.admin.body: Admin API body decoding with Kong's semantics."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kong_py.admin.body import BodyError, decode_pairs, parse_body, read_body

FORM = "application/x-www-form-urlencoded"


def form(query: str) -> dict[str, Any]:
    return parse_body(FORM, query.encode())


def multipart(parts: list[tuple[str, str, str | None]], boundary: str = "XyZ") -> tuple[bytes, str]:
    """Build a multipart/form-data body from (name, value, filename) parts."""
    chunks = []
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"\r\nContent-Type: application/octet-stream'
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n")
    chunks.append(f"--{boundary}--\r\n")
    return "".join(chunks).encode(), f"multipart/form-data; boundary={boundary}"


# --- the curl examples from the docs (curl --data joins with "&", no encoding) ---


def test_curl_upstream_creation() -> None:
    body = b"name=ai-upstream&algorithm=consistent-hashing&hash_on=header&hash_on_header=user-id"
    assert parse_body(FORM, body) == {
        "name": "ai-upstream",
        "algorithm": "consistent-hashing",
        "hash_on": "header",
        "hash_on_header": "user-id",
    }


def test_curl_active_healthchecks() -> None:
    body = (
        b"healthchecks.active.http_path=/health"
        b"&healthchecks.active.healthy.interval=5"
        b"&healthchecks.active.unhealthy.interval=5"
    )
    assert parse_body(FORM, body) == {
        "healthchecks": {
            "active": {
                "http_path": "/health",
                "healthy": {"interval": "5"},
                "unhealthy": {"interval": "5"},
            }
        }
    }


def test_curl_passive_healthchecks() -> None:
    body = b"healthchecks.passive.healthy.successes=3&healthchecks.passive.unhealthy.http_failures=3"
    assert parse_body(FORM, body) == {
        "healthchecks": {
            "passive": {"healthy": {"successes": "3"}, "unhealthy": {"http_failures": "3"}}
        }
    }


def test_curl_target_creation() -> None:
    body = b"target=backup-api.example.com:443&weight=100&backup=true"
    assert parse_body(FORM, body) == {
        "target": "backup-api.example.com:443",
        "weight": "100",
        "backup": "true",
    }


# --- form key syntax ---


def test_scalars_stay_strings() -> None:
    assert form("a=1&b=true&c=x") == {"a": "1", "b": "true", "c": "x"}


def test_single_value_is_not_wrapped_in_an_array() -> None:
    # Kong wraps it later (infer_value for array/set fields), never splits on commas.
    assert form("tags=a") == {"tags": "a"}
    assert form("paths=/x,/y") == {"paths": "/x,/y"}


def test_empty_string_becomes_none() -> None:
    assert form("a=&b.c=&d[]=") == {"a": None, "b": {"c": None}, "d": [None]}


def test_percent_and_plus_decoding() -> None:
    assert form("a=%2Fhealth%3Fx%3D1&b=hello+world") == {"a": "/health?x=1", "b": "hello world"}


def test_append_brackets() -> None:
    assert form("x[]=a&x[]=b") == {"x": ["a", "b"]}
    assert form("x%5B%5D=a&x%5B%5D=b") == {"x": ["a", "b"]}


def test_indexed_brackets_are_one_based_and_ordered() -> None:
    assert form("x[2]=b&x[1]=a") == {"x": ["a", "b"]}
    assert form("x[3]=c&x[1]=a") == {"x": ["a", "c"]}  # gaps are closed up


def test_index_zero_is_rejected() -> None:
    with pytest.raises(BodyError) as err:
        form("x[0]=a")
    assert err.value.status == 400


def test_huge_index_is_rejected() -> None:
    with pytest.raises(BodyError) as err:
        form("x[" + "9" * 5000 + "]=a")
    assert err.value.status == 400


def test_repeated_plain_key_becomes_array() -> None:
    assert form("x=a&x=b&x=c") == {"x": ["a", "b", "c"]}


def test_scalar_then_brackets_merge_into_one_array() -> None:
    assert form("x=a&x[]=b") == {"x": ["a", "b"]}
    assert form("x[]=a&x=b") == {"x": ["a", "b"]}


def test_repeated_indexed_key_nests_like_kong() -> None:
    assert form("x[1]=a&x[1]=b") == {"x": [["a", "b"]]}


def test_bracket_map_keys() -> None:
    assert form("headers[x-foo]=v") == {"headers": {"x-foo": "v"}}
    assert form("config.headers[x-foo]=v&config.headers[x-bar]=w") == {
        "config": {"headers": {"x-foo": "v", "x-bar": "w"}}
    }


def test_dots_inside_brackets_do_not_split() -> None:
    assert form("a.b[test.key]=v") == {"a": {"b": {"test.key": "v"}}}


def test_double_encoded_brackets() -> None:
    # a client that left %5B/%5D in the key after decoding, as Kong's decoder accepts
    assert form("a%255Bk%255D=v&b%255B%255D=1") == {"a": {"k": "v"}, "b": ["1"]}


def test_nested_array_under_dotted_key() -> None:
    assert form("config.headers[]=a&config.headers[]=b") == {"config": {"headers": ["a", "b"]}}
    assert form("a.b[1]=x&a.b[2]=y") == {"a": {"b": ["x", "y"]}}


def test_array_of_objects() -> None:
    assert form("targets[1].host=h1&targets[1].port=80&targets[2].host=h2") == {
        "targets": [{"host": "h1", "port": "80"}, {"host": "h2"}]
    }


def test_append_before_more_keys_addresses_first_element() -> None:
    assert form("x[].a=1&x[].b=2") == {"x": [{"a": "1", "b": "2"}]}


def test_multidimensional() -> None:
    assert form("k[][]=v") == {"k": [["v"]]}
    assert form("k[2][1]=b&k[1][1]=a") == {"k": [["a"], ["b"]]}
    assert form("k[foo][bar].key=v") == {"k": {"foo": {"bar": {"key": "v"}}}}
    assert form("x.r[1].s[a][2].t[b].u=v") == {
        "x": {"r": [{"s": {"a": [{"t": {"b": {"u": "v"}}}]}}]}
    }


def test_consecutive_dots_collapse() -> None:
    assert form("a..b=1") == {"a": {"b": "1"}}


def test_decode_pairs_directly() -> None:
    pairs = [("name", "svc"), ("tags[]", "a"), ("tags[]", "b"), ("config.x", "")]
    assert decode_pairs(pairs) == {"name": "svc", "tags": ["a", "b"], "config": {"x": None}}


@pytest.mark.parametrize(
    "query",
    ["a=1&a.b=2", "a.b=2&a=1", "a[1]=x&a.b=y", "a.b=y&a[1]=x", "x[a]=1&x[1]=2", "a[1].b=1&a[1]=2"],
)
def test_conflicts_raise_400(query: str) -> None:
    with pytest.raises(BodyError) as err:
        form(query)
    assert err.value.status == 400
    assert "conflicts" in err.value.message


@pytest.mark.parametrize("key", [".a", "a.", ".", "..", ""])
def test_invalid_names_raise_400(key: str) -> None:
    with pytest.raises(BodyError) as err:
        decode_pairs([(key, "v")])
    assert err.value.status == 400


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("[]", {"[]": "v"}),
        ("a[", {"a[": "v"}),
        ("a]]", {"a]]": "v"}),
        ("a[b]c", {"a[b]c": "v"}),
        ("[5][foo]", {"[5]": {"foo": "v"}}),
        ("a[1.5]", {"a": {"1.5": "v"}}),
    ],
)
def test_odd_keys_decode_literally_or_as_kong(key: str, expected: dict[str, Any]) -> None:
    assert decode_pairs([(key, "v")]) == expected


def test_too_deep_nesting_is_refused() -> None:
    with pytest.raises(BodyError):
        decode_pairs([("a" + ".b" * 1000, "v")])


def test_fuzz_only_ever_raises_body_error() -> None:
    rng = random.Random(1234)
    alphabet = "ab.[]01%5BD=&"
    for _ in range(3000):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        try:
            result = form(query)
        except BodyError as err:
            assert err.status == 400
        else:
            assert isinstance(result, dict)
            orjson.dumps(result)  # the result is plain JSON data


def test_hostile_keys_stay_fast() -> None:
    hostile = ("a" + "[" * 200_000, "a" + "[x" * 100_000, "a" + "[a]" * 50_000, "%5B" * 50_000)
    for key in hostile:
        try:
            decode_pairs([(key, "v")])
        except BodyError:
            pass


# --- content types ---


def test_empty_body_is_empty_dict() -> None:
    for content_type in (None, FORM, "application/json", "text/plain", "multipart/form-data"):
        assert parse_body(content_type, b"") == {}


def test_json_body() -> None:
    body = b'{"name": "svc", "tags": ["a"], "retries": 5, "path": "", "x": null}'
    assert parse_body("application/json", body) == {
        "name": "svc",
        "tags": ["a"],
        "retries": 5,
        "path": "",  # JSON values are kept as they are
        "x": None,
    }


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"],
)
def test_json_content_type_variants(content_type: str) -> None:
    assert parse_body(content_type, b'{"a": 1}') == {"a": 1}


@pytest.mark.parametrize("body", [b"{", b"not json", b"[1, 2]", b'"str"', b"3", b"null", b"\xff"])
def test_bad_or_non_object_json(body: bytes) -> None:
    with pytest.raises(BodyError) as err:
        parse_body("application/json", body)
    assert (err.value.status, err.value.message) == (400, "Cannot parse JSON body")


def test_form_content_type_with_charset() -> None:
    assert parse_body(FORM + "; charset=UTF-8", b"a=1") == {"a": "1"}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/xml", "invalid"])
def test_unsupported_media_type(content_type: str | None) -> None:
    with pytest.raises(BodyError) as err:
        parse_body(content_type, b"a=1")
    assert (err.value.status, err.value.message) == (415, "Unsupported Media Type")


def test_multipart_body() -> None:
    body, content_type = multipart(
        [
            ("name", "svc", None),
            ("tags[]", "a", None),
            ("tags[]", "b", None),
            ("config.headers[x-foo]", "v", None),
            ("empty", "", None),
            ("cert", "-----BEGIN CERTIFICATE-----", "cert.pem"),
        ]
    )
    assert parse_body(content_type, body) == {
        "name": "svc",
        "tags": ["a", "b"],
        "config": {"headers": {"x-foo": "v"}},
        "empty": None,
        "cert": "-----BEGIN CERTIFICATE-----",
    }


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("multipart/form-data", b"--x\r\n"), ("multipart/form-data; boundary=XyZ", b"garbage")],
)
def test_bad_multipart(content_type: str, body: bytes) -> None:
    with pytest.raises(BodyError) as err:
        parse_body(content_type, body)
    assert err.value.status == 400


# --- read_body through a real Starlette app (driven over ASGI) ---


async def echo(request: Request) -> Response:
    try:
        return JSONResponse(await read_body(request))
    except BodyError as err:
        return JSONResponse({"message": err.message}, status_code=err.status)


app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])


async def post(body: bytes, content_type: str | None = None) -> tuple[int, Any]:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    inbox = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], orjson.loads(payload)


async def test_read_body_form() -> None:
    status, data = await post(b"name=svc&healthchecks.active.http_path=/health&tags[]=a", FORM)
    assert status == 200
    assert data == {"name": "svc", "healthchecks": {"active": {"http_path": "/health"}}, "tags": ["a"]}


async def test_read_body_multipart_matches_parse_body() -> None:
    body, content_type = multipart(
        [("name", "svc", None), ("snis[]", "a.com", None), ("snis[]", "b.com", None), ("key", "PEM", "k.pem")]
    )
    status, data = await post(body, content_type)
    assert status == 200
    assert data == {"name": "svc", "snis": ["a.com", "b.com"], "key": "PEM"}
    assert data == parse_body(content_type, body)


async def test_read_body_bad_multipart() -> None:
    assert (await post(b"--x\r\n", "multipart/form-data"))[0] == 400


async def test_read_body_json() -> None:
    status, data = await post(b'{"name": "svc", "port": 80}', "application/json")
    assert (status, data) == (200, {"name": "svc", "port": 80})


async def test_read_body_bad_json() -> None:
    assert await post(b"{nope", "application/json") == (400, {"message": "Cannot parse JSON body"})


async def test_read_body_unsupported_media_type() -> None:
    assert await post(b"hello", "text/plain") == (415, {"message": "Unsupported Media Type"})
    assert await post(b"hello") == (415, {"message": "Unsupported Media Type"})


async def test_read_body_empty() -> None:
    assert await post(b"") == (200, {})
    assert await post(b"", "application/json") == (200, {})
