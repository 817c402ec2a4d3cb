"""The router: picks the route for a request, compiled once per snapshot.

Precedence follows Kong's: a route matching on more attributes (hosts,
headers, methods, paths) wins, and among as many, hosts before headers before
paths before methods; then more headers; then, among paths, an exact
match, then regex paths by ``regex_priority``, then the longest prefix; then
the oldest route.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Generic, Iterable, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Match(Generic[T]):
    """A matched route: its payload and the part of the path it matched."""

    value: T
    matched_path: str | None
    captures: dict[str, str] | None


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T
    order: int
    methods: frozenset[str] | None
    exact_hosts: frozenset[str]
    wildcard_hosts: tuple[tuple[str, str], ...]  # (prefix, suffix)
    headers: tuple[tuple[str, frozenset[str]], ...]
    prefixes: tuple[str, ...]
    regexes: tuple[re.Pattern[str], ...]
    regex_priority: int
    #: (number of attributes matched on, which ones): Kong ranks by the count,
    #: then hosts > headers > paths > methods
    categories: tuple[int, int]


#: below this many routes a plain scan beats looking up candidates
INDEX_THRESHOLD = 16


class Router(Generic[T]):
    """Compiled routes. ``routes`` are (route entity, payload) pairs.

    With many routes, those whose paths are all plain prefixes sit in a
    character trie of their prefixes, so a request only checks the routes whose
    prefix it starts with (plus the routes with regex paths or no paths).
    """

    def __init__(self, routes: Iterable[tuple[dict[str, Any], T]]) -> None:
        self._entries: list[_Entry[T]] = [_compile(route, value, order)
                                          for order, (route, value) in enumerate(routes)]
        # Entries with more categories first; the scan stops at the first
        # category level that produced a match.
        self._entries.sort(key=_scan_order)
        self._trie: dict[str, Any] | None = None
        self._unindexed: list[_Entry[T]] = []
        if len(self._entries) > INDEX_THRESHOLD:
            self._trie = {}
            for entry in self._entries:
                if entry.prefixes and not entry.regexes:
                    for prefix in entry.prefixes:
                        node = self._trie
                        for char in prefix:
                            node = node.setdefault(char, {})
                        node.setdefault("", []).append(entry)  # "" never is a path character
                else:
                    self._unindexed.append(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def _candidates(self, path: str) -> list[_Entry[T]]:
        """Routes that could match ``path``, in scan order."""
        assert self._trie is not None
        found: dict[int, _Entry[T]] = {id(e): e for e in self._unindexed}
        node = self._trie
        for char in path:
            node = node.get(char)
            if node is None:
                break
            for entry in node.get("", ()):
                found[id(entry)] = entry
        return sorted(found.values(), key=_scan_order)

    def match(self, method: str, host: str | None, path: str,
              headers: dict[str, list[str]] | None = None) -> Match[T] | None:
        best: tuple[tuple[int, ...], _Entry[T], str | None, dict[str, str] | None] | None = None
        host_name = _strip_port(host) if host else None
        entries = self._entries if self._trie is None else self._candidates(path)
        for entry in entries:
            level = entry.categories + (len(entry.headers),)
            if best is not None and level < best[0][:3]:
                break
            if entry.methods is not None and method not in entry.methods:
                continue
            if (entry.exact_hosts or entry.wildcard_hosts) and not _host_matches(entry, host_name):
                continue
            if entry.headers and not _headers_match(entry, headers):
                continue
            rank, matched, captures = _path_rank(entry, path)
            if rank is None:
                continue
            key = level + rank + (-entry.order,)
            if best is None or key > best[0]:
                best = (key, entry, matched, captures)
        if best is None:
            return None
        return Match(best[1].value, best[2], best[3])


def _scan_order(entry: _Entry[Any]) -> tuple[int, ...]:
    count, bits = entry.categories
    return (-count, -bits, -len(entry.headers), entry.order)


def _compile(route: dict[str, Any], value: T, order: int) -> _Entry[T]:
    hosts = route.get("hosts") or []
    exact = frozenset(h.lower() for h in hosts if "*" not in h)
    wildcards = tuple(
        (h[:h.index("*")].lower(), h[h.index("*") + 1:].lower()) for h in hosts if "*" in h)
    headers = tuple(sorted(
        (name.lower(), frozenset(v.lower() for v in values))
        for name, values in (route.get("headers") or {}).items()))
    paths = route.get("paths") or []
    prefixes = tuple(p for p in paths if not p.startswith("~"))
    regexes = tuple(re.compile(p[1:]) for p in paths if p.startswith("~"))
    methods = route.get("methods")
    present = (bool(hosts), bool(headers), bool(paths), bool(methods))
    categories = (sum(present), sum(bit << (3 - i) for i, bit in enumerate(present)))
    return _Entry(value, order, frozenset(methods) if methods else None, exact, wildcards,
                  headers, prefixes, regexes, int(route.get("regex_priority") or 0), categories)


def _strip_port(host: str) -> str:
    host = host.lower()
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


def _host_matches(entry: _Entry[Any], host: str | None) -> bool:
    if host is None:
        return False
    if host in entry.exact_hosts:
        return True
    return any(host.startswith(pre) and host.endswith(suf) and len(host) > len(pre) + len(suf)
               for pre, suf in entry.wildcard_hosts)


def _headers_match(entry: _Entry[Any], headers: dict[str, list[str]] | None) -> bool:
    if not headers:
        return False
    for name, wanted in entry.headers:
        values = headers.get(name)
        if not values or not any(v.lower() in wanted for v in values):
            return False
    return True


def _path_rank(entry: _Entry[Any], path: str) -> tuple[tuple[int, ...] | None, str | None, dict[str, str] | None]:
    """Rank of the best path of ``entry`` for ``path``: (exact, regex, priority, length)."""
    if not entry.prefixes and not entry.regexes:
        return (0, 0, 0, 0), None, None
    best: tuple[int, ...] | None = None
    matched: str | None = None
    captures: dict[str, str] | None = None
    for prefix in entry.prefixes:
        if path.startswith(prefix):
            rank = (int(path == prefix), 0, 0, len(prefix))
            if best is None or rank > best:
                best, matched, captures = rank, prefix, None
    for regex in entry.regexes:
        m = regex.match(path)
        if m:
            rank = (0, 1, entry.regex_priority, len(regex.pattern))
            if best is None or rank > best:
                groups = {k: v for k, v in m.groupdict().items() if v is not None}
                groups.update({str(i + 1): v for i, v in enumerate(m.groups()) if v is not None})
                best, matched, captures = rank, m.group(0), groups
    return best, matched, captures
