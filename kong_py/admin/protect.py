"""Admin API protection: who may talk to it, and how much they may send.

One ASGI middleware, prepared once from the configuration, in front of every
Admin API route. In order, a request is refused when:

1. its ``Host`` is not a name this listener answers to (421): a page that
   rebinds its own DNS name to 127.0.0.1 still sends its own name;
2. a browser says it comes from another site (403): an ``Origin`` that is not
   the Admin API's, or ``Sec-Fetch-Site`` other than ``same-origin``/``none``
   (curl sends neither, so scripts are unaffected);
3. ``admin_token`` is set and the request does not carry it (401);
4. the body is larger than ``admin_client_max_body_size`` (413), by its
   ``Content-Length`` before anything is read, or while a chunked body streams.

A refused body is never buffered: after the answer, uvicorn reads what the
client still sends and drops it (so the client gets to read the answer; closing
at once would reset the connection under its upload). Answers use Kong's JSON
``{"message": ...}``.
"""
from __future__ import annotations

import hmac
import ipaddress
import ssl
from typing import Any, Awaitable, Callable, MutableMapping, Sequence
from urllib.parse import urlsplit

import orjson

from ..config import Config, ConfigError
from .body import BodyError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["AdminGuard", "BodyTooLarge", "HostRules", "check_admin_tls", "client_tls_context"]

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_SAME_SITE = (b"same-origin", b"none")
_SHOWN = 100  # longest Host echoed back in an error message


class BodyTooLarge(BodyError):
    """Raised from ``receive`` when a streamed body passes the cap (Kong's 413 message)."""

    def __init__(self) -> None:
        super().__init__(413, "Request size limit exceeded")


def check_admin_tls(config: Config) -> None:
    """Load ``admin_ssl_cert``/``admin_ssl_cert_key`` once, so a bad file is one clear line
    at start (and in ``gateway check``) rather than a failing server."""
    if config.admin_ssl_cert is None or config.admin_ssl_cert_key is None:
        return
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(config.admin_ssl_cert), str(config.admin_ssl_cert_key))
    except OSError as exc:  # ssl.SSLError is an OSError too
        if isinstance(exc, ssl.SSLError):
            reason = f"not a PEM certificate and its private key ({exc.reason or exc})"
        else:
            reason = exc.strerror or str(exc)
        raise ConfigError(f"invalid value for 'admin_ssl_cert': cannot load {config.admin_ssl_cert} "
                          f"with {config.admin_ssl_cert_key}: {reason}", "admin_ssl_cert") from None


def client_tls_context(config: Config) -> ssl.SSLContext:
    """How the CLI talks to its own Admin API over TLS: it trusts exactly the configured
    certificate (pinned; any name, since it connects to an address)."""
    assert config.admin_ssl_cert is not None
    context = ssl.create_default_context(cafile=str(config.admin_ssl_cert))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False
    return context


def _is_loopback_or_wildcard(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    except ValueError:
        return False
    return True


def split_authority(authority: str, default_port: int) -> tuple[str, int] | None:
    """``host[:port]`` (IPv6 in brackets, kept) lower-cased, or None when malformed."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return None
        name, rest = authority[: end + 1], authority[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else ""
    else:
        name, _, port_text = authority.partition(":")
    name = name.rstrip(".") if not name.startswith("[") else name
    if not name:
        return None
    if not port_text:
        return name, default_port
    if not port_text.isdigit() or len(port_text) > 5:
        return None
    return name, int(port_text)


class HostRules:
    """The names (and ports) one Admin API listener answers to."""

    def __init__(self, config: Config) -> None:
        listen = config.admin_listen
        self.port = listen.port
        self.default_port = 443 if config.admin_tls else 80
        own = f"[{listen.host}]" if ":" in listen.host else listen.host
        self.names = {own.lower()}
        self.wildcard = listen.host in ("0.0.0.0", "::")
        if _is_loopback_or_wildcard(listen.host):
            self.names.update(_LOOPBACK_NAMES)
        self.any_host = "*" in config.admin_allowed_hosts
        self.extra_any_port: set[str] = set()
        self.extra_exact: set[tuple[str, int]] = set()
        for entry in config.admin_allowed_hosts:
            if entry == "*":
                continue
            parsed = split_authority(entry, 0)
            assert parsed is not None  # validated by the configuration
            name, port = parsed
            if port:
                self.extra_exact.add((name, port))
            else:
                self.extra_any_port.add(name)

    def allows(self, authority: str, default_port: int | None = None, origin: bool = False) -> bool:
        """Whether a ``Host`` (or, ``origin=True``, an ``Origin``'s authority) names this Admin API.

        ``*`` in admin_allowed_hosts accepts every Host, never every Origin.
        """
        if self.any_host and not origin:
            return True
        parsed = split_authority(authority, self.default_port if default_port is None else default_port)
        if parsed is None:
            return False
        name, port = parsed
        if name in self.extra_any_port or (name, port) in self.extra_exact:
            return True
        if port != self.port:
            return False
        # on a wildcard listener any address of the machine is the listener's own, and
        # an IP literal cannot be rebound by a page's DNS
        return name in self.names or (self.wildcard and _is_ip_literal(name))


def _answer(status: int, message: str, extra: Sequence[tuple[bytes, bytes]] = ()) -> tuple[Message, Message]:
    body = orjson.dumps({"message": message})
    headers = [(b"content-type", b"application/json; charset=utf-8"),
               (b"content-length", str(len(body)).encode()), *extra]
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body})


class AdminGuard:
    """ASGI middleware applying the checks above before the Admin API sees a request."""

    def __init__(self, app: ASGIApp, config: Config) -> None:
        self.app = app
        self.hosts = HostRules(config)
        self.token = config.admin_token.encode() if config.admin_token is not None else None
        self.max_body = config.admin_client_max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await send(refusal[0])
            await send(refusal[1])
            return
        await self._limited(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[Message, Message] | None:
        host = origin = fetch_site = None
        hosts = 0
        tokens: list[bytes] = []
        length = b""
        for name, value in scope["headers"]:
            if name == b"host":
                host, hosts = value, hosts + 1
            elif name == b"origin":
                origin = value
            elif name == b"sec-fetch-site":
                fetch_site = value.strip().lower()
            elif name == b"authorization":
                scheme, _, credentials = value.strip().partition(b" ")
                if scheme.lower() == b"bearer":
                    tokens.append(credentials.strip())
            elif name == b"kong-admin-token":
                tokens.append(value.strip())
            elif name == b"content-length":
                length = value
        if hosts > 1:
            return _answer(400, "Bad request: more than one Host header")
        if host is not None:
            text = host.decode("latin-1")
            if not self.hosts.allows(text):
                shown = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
                return _answer(421, f"Misdirected request: this Admin API does not answer to host "
                                    f"{shown!r} (see admin_allowed_hosts)")
        if origin is not None and not self._same_origin(origin.decode("latin-1"), host):
            return _answer(403, "Forbidden: cross-site requests to the Admin API are refused")
        if fetch_site is not None and fetch_site not in _SAME_SITE:
            return _answer(403, "Forbidden: cross-site requests to the Admin API are refused")
        if self.token is not None and not self._authorized(tokens):
            return _answer(401, "Unauthorized", [(b"www-authenticate", b'Bearer realm="kong_py admin"')])
        if length:
            try:
                declared = int(length)
            except ValueError:
                return _answer(400, "Bad request: invalid Content-Length")
            if declared > self.max_body:
                return _answer(413, "Request size limit exceeded")
        return None

    def _same_origin(self, origin: str, host: bytes | None) -> bool:
        """An ``Origin`` naming this Admin API: the request's own Host, or another of
        its names (``null`` and other sites are not)."""
        try:
            parts = urlsplit(origin.strip())
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            return False
        default = 443 if parts.scheme == "https" else 80
        here = split_authority(host.decode("latin-1"), self.hosts.default_port) if host is not None else None
        if here is not None and split_authority(parts.netloc, default) == here:
            return True
        return self.hosts.allows(parts.netloc, default, origin=True)

    def _authorized(self, tokens: list[bytes]) -> bool:
        expected = self.token
        assert expected is not None
        ok = False
        for given in tokens:  # every candidate is compared: the time does not tell which was close
            ok |= hmac.compare_digest(given, expected)
        return ok

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a ``receive`` that stops a chunked body at the cap."""
        received = 0
        started = False
        limit = self.max_body

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            start, body = _answer(413, "Request size limit exceeded")
            await send(start)
            await send(body)
