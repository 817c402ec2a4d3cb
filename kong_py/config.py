"""Gateway configuration: one immutable ``Config`` parsed once at start-up.

Precedence, lowest to highest: built-in defaults, the ``key = value`` file
(see ``conf/gateway.conf``), ``GATEWAY_<KEY>`` environment variables, keyword
overrides. This is the only module that reads settings from the environment,
so every other component receives a fully validated ``Config``.
"""
from __future__ import annotations

import difflib
import ipaddress
import logging
import math
import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

__all__ = ["Config", "ConfigError", "Listen", "DEFAULTS", "ENV_PREFIX", "load_config"]

ENV_PREFIX = "GATEWAY_"

#: Built-in defaults, as the strings a configuration file would contain.
DEFAULTS: dict[str, str] = {
    "prefix": "./servroot",
    "proxy_listen": "0.0.0.0:8000",
    "admin_listen": "127.0.0.1:8001",
    "database": "sqlite",
    "pg_dsn": "postgresql://127.0.0.1:5432/kong",
    "log_level": "info",
    "plugins": "bundled",
    "db_update_frequency": "5",
    "workers": "1",
    "graceful_timeout": "10",
    "upstream_keepalive_idle_timeout": "60",
    "retry_body_limit": "1048576",
    "upstream_target_header": "X-Kong-Upstream-Target",
    "access_log": "off",
    "client_header_timeout": "60",
    "client_body_timeout": "60",
    "client_keepalive_timeout": "75",
    "client_max_head_size": "32768",
    "client_max_header_size": "8192",
    "client_max_headers": "100",
    "max_client_connections": "10000",
    "admin_allowed_hosts": "off",
    "admin_token": "off",
    "admin_ssl_cert": "off",
    "admin_ssl_cert_key": "off",
    "admin_client_max_body_size": "10485760",
    "upstream_deny_addresses": "admin_listen,169.254.0.0/16,fe80::/10",
}

# Kong's level names; "notice" sits between INFO and WARNING as in nginx.
_LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO + 5,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "crit": logging.CRITICAL,
}
_WILDCARD_CONNECT = {"0.0.0.0": "127.0.0.1", "::": "::1"}
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_PLUGIN_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HEADER_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class ConfigError(ValueError):
    """A bad configuration; ``str()`` is one line naming the offending key."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _invalid(key: str, expected: str, raw: str) -> ConfigError:
    return ConfigError(f"invalid value for {key!r}: expected {expected}, got {raw!r}", key)


@dataclass(frozen=True)
class Listen:
    """A ``host:port`` listen address; IPv6 hosts are stored without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def connect_host(self) -> str:
        """Where a local client should connect: wildcards mean loopback."""
        return _WILDCARD_CONNECT.get(self.host, self.host)

    def overlaps(self, other: Listen) -> bool:
        """True when both cannot be bound at once (same port, same or wildcard host)."""
        wild = set(_WILDCARD_CONNECT)
        return self.port == other.port and (
            self.host == other.host or self.host in wild or other.host in wild
        )


@dataclass(frozen=True)
class Config:
    """Validated settings; see ``conf/gateway.conf`` for what each one means."""

    prefix: Path
    proxy_listen: Listen
    admin_listen: Listen
    database: Literal["sqlite", "postgres"]
    pg_dsn: str
    log_level: str
    plugins: tuple[str, ...]
    db_update_frequency: float
    workers: int
    graceful_timeout: float
    upstream_keepalive_idle_timeout: float
    retry_body_limit: int
    upstream_target_header: str | None
    access_log: Path | None
    client_header_timeout: float
    client_body_timeout: float
    client_keepalive_timeout: float
    client_max_head_size: int
    client_max_header_size: int
    client_max_headers: int
    max_client_connections: int
    #: more names the Admin API answers to (``Host``/``Origin``); ``*`` turns the check off
    admin_allowed_hosts: tuple[str, ...]
    #: the Admin API's bearer token (None: no authentication); kept out of repr()
    admin_token: str | None = field(repr=False)
    admin_ssl_cert: Path | None
    admin_ssl_cert_key: Path | None
    admin_client_max_body_size: int
    #: "admin_listen" and CIDR ranges that services and targets may not point at
    upstream_deny_addresses: tuple[str, ...]

    @property
    def admin_tls(self) -> bool:
        """Whether the Admin API serves HTTPS."""
        return self.admin_ssl_cert is not None

    def create_prefix(self) -> Path:
        """Create the prefix (0700: it holds credentials and the node's state) if missing."""
        self.prefix.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.prefix

    @property
    def db_path(self) -> Path:
        return self.prefix / "gateway.db"

    @property
    def node_state_path(self) -> Path:
        """State the node's workers share (health, connection counts); wiped at start."""
        return self.prefix / "node_state"

    @property
    def pid_path(self) -> Path:
        return self.prefix / "gateway.pid"

    @property
    def log_dir(self) -> Path:
        return self.prefix / "logs"

    @property
    def logging_level(self) -> int:
        """``log_level`` as a :mod:`logging` level number."""
        return _LOG_LEVELS[self.log_level]

    def conf_values(self) -> dict[str, str]:
        """Settings rendered as configuration strings that parse back to this Config.

        Lets the CLI hand the exact same settings to a daemonized child.
        """
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = _render(value)
        return out


def _render(value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, tuple):
        return ",".join(value) if value else "off"
    return str(value)


# -- value parsers ------------------------------------------------------------


def _parse_listen(key: str, raw: str) -> Listen:
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]\s]+):(\d+)", raw)
    if not m:
        raise _invalid(key, "host:port", raw)
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if m.group(1) is not None:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _invalid(key, "an IPv6 address inside [ ]", raw) from None
    elif not _HOSTNAME_RE.match(host):
        raise _invalid(key, "host:port", raw)
    if not 1 <= port <= 65535:
        raise _invalid(key, "a port between 1 and 65535", raw)
    return Listen(host, port)


def _parse_int(key: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(key, f"an integer >= {minimum}", raw) from None
    if value < minimum:
        raise _invalid(key, f"an integer >= {minimum}", raw)
    return value


def _parse_float(key: str, raw: str, *, positive: bool) -> float:
    expected = "a number > 0" if positive else "a number >= 0"
    try:
        value = float(raw)
    except ValueError:
        raise _invalid(key, expected, raw) from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise _invalid(key, expected, raw)
    return value


def _parse_choice(key: str, raw: str, choices: list[str]) -> str:
    value = raw.lower()
    if value not in choices:
        raise _invalid(key, " | ".join(choices), raw)
    return value


def _parse_plugins(key: str, raw: str) -> tuple[str, ...]:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    expected = "'bundled', 'off' or comma-separated plugin names"
    if not names or not all(_PLUGIN_RE.match(n) for n in names):
        raise _invalid(key, expected, raw)
    if "off" in names:
        if len(names) > 1:
            raise _invalid(key, "'off' alone, not mixed with plugin names", raw)
        return ()
    return tuple(dict.fromkeys(names))  # de-duplicate, keep order


def _parse_header(key: str, raw: str) -> str | None:
    if raw.lower() == "off":
        return None
    if not _HEADER_RE.match(raw):
        raise _invalid(key, "an HTTP header name or 'off'", raw)
    return raw


def _parse_path(key: str, raw: str, base: Path) -> Path:
    if not raw:
        raise _invalid(key, "a path", raw)
    return Path(os.path.abspath(base / Path(raw).expanduser()))


def _parse_nonempty(key: str, raw: str) -> str:
    if not raw:
        raise _invalid(key, "a non-empty string", raw)
    return raw


_ALLOWED_HOST_RE = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]\s]+)(?::(\d+))?")
_TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")


def _parse_allowed_hosts(key: str, raw: str) -> tuple[str, ...]:
    """Names (``host`` or ``host:port``, IPv6 in brackets) or ``*``, lower-cased."""
    if raw.lower() == "off":
        return ()
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if not names:
        raise _invalid(key, "'off', '*' or comma-separated host[:port] names", raw)
    for name in names:
        if name == "*":
            continue
        m = _ALLOWED_HOST_RE.fullmatch(name)
        port = m and (m.group(2) or m.group(4))
        ok = m is not None and (not port or 1 <= int(port) <= 65535)
        if ok and m.group(1) is not None:
            try:
                ipaddress.IPv6Address(m.group(1))
            except ValueError:
                ok = False
        elif ok and not _HOSTNAME_RE.match(m.group(3)):
            ok = False
        if not ok:
            raise _invalid(key, "'off', '*' or comma-separated host[:port] names", name)
    return tuple(dict.fromkeys(names))


def _parse_token(key: str, raw: str) -> str | None:
    """The value is a secret: the error message never shows it."""
    if raw.lower() == "off":
        return None
    if len(raw) < 16 or not _TOKEN_RE.match(raw):
        raise ConfigError(f"invalid value for {key!r}: expected 'off' or at least 16 printable "
                          "ASCII characters without spaces (value not shown)", key)
    return raw


def _parse_deny(key: str, raw: str) -> tuple[str, ...]:
    """``admin_listen`` and CIDR ranges (a bare address is a /32 or /128), normalised."""
    if raw.lower() == "off":
        return ()
    out: list[str] = []
    for item in (i.strip() for i in raw.split(",")):
        if not item:
            continue
        if item.lower() == "admin_listen":
            out.append("admin_listen")
            continue
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise _invalid(key, "'off', or comma-separated 'admin_listen' and CIDR ranges", item) from None
    if not out:
        raise _invalid(key, "'off', or comma-separated 'admin_listen' and CIDR ranges", raw)
    return tuple(dict.fromkeys(out))


_SIMPLE: dict[str, Callable[[str, str], Any]] = {
    "proxy_listen": _parse_listen,
    "admin_listen": _parse_listen,
    "database": lambda k, r: _parse_choice(k, r, ["sqlite", "postgres"]),
    "pg_dsn": _parse_nonempty,
    "log_level": lambda k, r: _parse_choice(k, r, list(_LOG_LEVELS)),
    "plugins": _parse_plugins,
    "db_update_frequency": lambda k, r: _parse_float(k, r, positive=True),
    "workers": lambda k, r: _parse_int(k, r, 1),
    "graceful_timeout": lambda k, r: _parse_float(k, r, positive=False),
    "upstream_keepalive_idle_timeout": lambda k, r: _parse_float(k, r, positive=True),
    "retry_body_limit": lambda k, r: _parse_int(k, r, 0),
    "upstream_target_header": _parse_header,
    "client_header_timeout": lambda k, r: _parse_float(k, r, positive=True),
    "client_body_timeout": lambda k, r: _parse_float(k, r, positive=True),
    "client_keepalive_timeout": lambda k, r: _parse_float(k, r, positive=True),
    "client_max_head_size": lambda k, r: _parse_int(k, r, 4096),
    "client_max_header_size": lambda k, r: _parse_int(k, r, 1024),
    "client_max_headers": lambda k, r: _parse_int(k, r, 10),
    "max_client_connections": lambda k, r: _parse_int(k, r, 1),
    "admin_allowed_hosts": _parse_allowed_hosts,
    "admin_token": _parse_token,
    "admin_client_max_body_size": lambda k, r: _parse_int(k, r, 1),
    "upstream_deny_addresses": _parse_deny,
}


# -- file reading ---------------------------------------------------------------


def _strip_value(raw: str, where: str) -> str:
    """Remove surrounding quotes and a trailing ``# comment`` (``\\#`` is a literal #)."""
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        end = raw.find(raw[0], 1)
        rest = raw[end + 1 :].strip() if end != -1 else ""
        if end == -1 or (rest and not rest.startswith("#")):
            raise ConfigError(f"{where}: unterminated or malformed quoted value")
        return raw[1:end]
    value, i = [], 0
    while i < len(raw):
        if raw.startswith("\\#", i):
            value.append("#")
            i += 2
            continue
        if raw[i] == "#":
            break
        value.append(raw[i])
        i += 1
    return "".join(value).strip()


def _read_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot read configuration file '{path}': {reason}") from None
    values: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{where}: expected 'key = value', got {stripped!r}")
        if key not in DEFAULTS:
            raise ConfigError(f"unknown configuration key {key!r} at {where}", key)
        values[key] = _strip_value(raw, where)
    return values


def _override_to_str(key: str, value: Any) -> str:
    if key not in DEFAULTS:
        raise ConfigError(f"unknown configuration key {key!r}", key)
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple)):
        return ",".join(value) if value else "off"
    return _render(value)


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Build the Config from defaults, ``path``, ``GATEWAY_*`` env, then ``overrides``.

    With ``path=None`` only built-in defaults are used: ``conf/gateway.conf`` is a
    documented template, not something read implicitly.
    """
    raw = dict(DEFAULTS)
    if path is not None:
        raw.update(_read_file(Path(path)))
    environ = os.environ if env is None else env
    for key in DEFAULTS:
        value = environ.get(ENV_PREFIX + key.upper())
        if value is not None:
            raw[key] = value.strip()
    _warn_unknown_env(environ)
    for key, value in overrides.items():
        raw[key] = _override_to_str(key, value)

    parsed: dict[str, Any] = {k: parse(k, raw[k]) for k, parse in _SIMPLE.items()}
    parsed["prefix"] = prefix = _parse_path("prefix", raw["prefix"], Path.cwd())
    access_log = raw["access_log"]
    parsed["access_log"] = (
        None if access_log.lower() == "off" else _parse_path("access_log", access_log, prefix)
    )
    for key in ("admin_ssl_cert", "admin_ssl_cert_key"):
        parsed[key] = None if raw[key].lower() == "off" else _parse_path(key, raw[key], Path.cwd())
    if (parsed["admin_ssl_cert"] is None) != (parsed["admin_ssl_cert_key"] is None):
        missing = "admin_ssl_cert_key" if parsed["admin_ssl_cert_key"] is None else "admin_ssl_cert"
        raise ConfigError(f"invalid value for {missing!r}: admin_ssl_cert and admin_ssl_cert_key "
                          "are set together", missing)
    if parsed["proxy_listen"].overlaps(parsed["admin_listen"]):
        raise ConfigError(
            f"invalid value for 'admin_listen': {raw['admin_listen']!r} "
            f"conflicts with proxy_listen {raw['proxy_listen']!r}",
            "admin_listen",
        )
    return Config(**parsed)


def _warn_unknown_env(environ: Mapping[str, str]) -> None:
    """A misspelt ``GATEWAY_*`` variable would be ignored silently: say so, one line each."""
    known = {ENV_PREFIX + key.upper() for key in DEFAULTS}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"warning: ignoring unknown environment variable {name}{hint}", file=sys.stderr)
