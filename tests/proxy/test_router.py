"""The router alone: precedence rules, and the same answers with the candidate index."""
from __future__ import annotations

import random

from kong_py.proxy.router import INDEX_THRESHOLD, Router


def _route(name: str, **fields) -> tuple[dict, str]:
    return ({"id": name, **fields}, name)


def test_precedence_rules():
    router = Router([
        _route("root", paths=["/"]),
        _route("v1", paths=["/v1"]),
        _route("chat", paths=["/v1/chat"]),
        _route("exact", paths=["/v1/chat/completions"]),
        _route("regex", paths=[r"~/v1/chat/\w+$"], regex_priority=5),
        _route("host", paths=["/v1"], hosts=["api.example.com"]),
        _route("wild", hosts=["*.example.org"]),
        _route("post", paths=["/v1"], methods=["POST"]),
        _route("hdr", paths=["/v1"], headers={"x-v": ["2"]}),
    ])
    assert router.match("GET", "x", "/other").value == "root"
    assert router.match("GET", "x", "/v1/models").value == "v1"
    assert router.match("GET", "x", "/v1/chat").value == "chat"
    assert router.match("GET", "x", "/v1/chat/completions").value == "exact"
    assert router.match("GET", "x", "/v1/chat/stream").value == "regex"
    assert router.match("GET", "api.example.com:8000", "/v1/chat").value == "host"
    assert router.match("GET", "a.example.org", "/anything").value == "wild"
    assert router.match("POST", "x", "/v1/chat").value == "post"
    assert router.match("GET", "x", "/v1/chat", {"x-v": ["2"]}).value == "hdr"
    assert Router([_route("a", paths=["/a"])]).match("GET", "x", "/b") is None


def _random_routes(rng: random.Random, count: int) -> list[tuple[dict, str]]:
    segments = ["v1", "v2", "chat", "models", "embed", "a", "b"]
    routes = []
    for i in range(count):
        path = "/" + "/".join(rng.choice(segments) for _ in range(rng.randint(0, 3)))
        fields: dict = {"paths": [path]} if rng.random() < 0.9 else {"paths": [f"~{path}/\\d+$"]}
        if rng.random() < 0.2:
            fields["methods"] = [rng.choice(["GET", "POST"])]
        if rng.random() < 0.2:
            fields["hosts"] = [rng.choice(["a.test", "*.b.test"])]
        if rng.random() < 0.1:
            fields["headers"] = {"x-k": [rng.choice(["1", "2"])]}
        if rng.random() < 0.05:
            fields.pop("paths")
            fields.setdefault("methods", ["GET"])
        routes.append(_route(f"r{i}", **fields))
    return routes


def test_index_gives_the_same_answers_as_the_scan():
    rng = random.Random(7)
    routes = _random_routes(rng, 300)
    indexed = Router(routes)
    assert indexed._trie is not None
    for _ in range(3000):
        path = "/" + "/".join(rng.choice(["v1", "v2", "chat", "models", "x", "1", "22"])
                              for _ in range(rng.randint(0, 4)))
        method, host = rng.choice(["GET", "POST"]), rng.choice(["a.test", "c.b.test", "z"])
        headers = {"x-k": [rng.choice(["1", "2"])]} if rng.random() < 0.5 else None
        expected = None
        # the reference: every route checked, best key wins
        scan = Router.__new__(Router)
        scan._entries, scan._trie, scan._unindexed = indexed._entries, None, []
        expected = scan.match(method, host, path, headers)
        got = indexed.match(method, host, path, headers)
        assert (got and got.value) == (expected and expected.value), (method, host, path, headers)
    assert len(routes) > INDEX_THRESHOLD
