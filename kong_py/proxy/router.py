"""The router: picks the route for a request, compiled once per snapshot.

Precedence follows Kong's: a route matching on more attributes (hosts,
headers, methods, paths) wins; then more headers; then, among paths, an exact
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
    categories: int


class Router(Generic[T]):
    """Compiled routes. ``routes`` are (route entity, payload) pairs."""

    def __init__(self, routes: Iterable[tuple[dict[str, Any], T]]) -> None:
        self._entries: list[_Entry[T]] = []
        for order, (route, value) in enumerate(routes):
            entry = _compile(route, value, order)
            self._entries.append(entry)
        # Entries with more categories first; the scan stops at the first
        # category level that produced a match.
        self._entries.sort(key=lambda e: (-e.categories, -len(e.headers), e.order))

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, method: str, host: str | None, path: str,
              headers: dict[str, list[str]] | None = None) -> Match[T] | None:
        best: tuple[tuple[int, ...], _Entry[T], str | None, dict[str, str] | None] | None = None
        host_name = _strip_port(host) if host else None
        for entry in self._entries:
            if best is not None and (entry.categories, len(entry.headers)) < best[0][:2]:
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
            key = (entry.categories, len(entry.headers)) + rank + (-entry.order,)
            if best is None or key > best[0]:
                best = (key, entry, matched, captures)
        if best is None:
            return None
        return Match(best[1].value, best[2], best[3])


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
    categories = sum(bool(x) for x in (hosts, headers, methods, paths))
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
