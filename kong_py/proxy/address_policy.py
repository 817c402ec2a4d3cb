"""Which addresses the gateway may connect to on behalf of a client.

Without a policy a service or target can point anywhere: at the gateway's own
Admin API (which a proxied route would then expose on the public port), or at
a cloud metadata service (169.254.169.254). ``upstream_deny_addresses`` lists
what is refused: ``admin_listen`` (the Admin API's address and its loopback or
wildcard equivalents) and CIDR ranges.

It is applied twice:

* when an entity is written (the Admin API answers 400), on what the host says
  by itself: IP literals, the odd spellings a resolver reads as IPv4
  (``0x7f000001``, ``2130706433``, ``127.1``, ``0177.0.0.1``) and ``localhost``;
* on every new upstream connection, after DNS resolution (a name may resolve,
  or be re-pointed later, to a denied address): the connection fails as a
  connect error, which the proxy answers 502.

What it does not know: the other addresses of this machine when the Admin API
listens on a wildcard address, and where a forward proxy connects (only the
proxy's own address is checked at connect time).
"""
from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["AddressPolicy", "IPAddress", "parse_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_WILDCARDS = ("0.0.0.0", "::")


def parse_ip(host: str) -> IPAddress | None:
    """The address a resolver would read in ``host`` without DNS, or None for a name.

    Besides ordinary literals (IPv6 with or without brackets or a zone), the
    forms ``inet_aton`` accepts: hex, octal, a single number, fewer than 4 parts.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return _plain(ipaddress.ip_address(text.split("%", 1)[0] if ":" in text else text))
    except ValueError:
        pass
    if not text or not all(c in "0123456789abcdefxABCDEFX." for c in text):
        return None  # inet_aton would also take trailing junk after a space; a host has none
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def _plain(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is the IPv4 address it maps."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_localhost(host: str) -> bool:
    """Names every resolver maps to loopback without asking DNS (RFC 6761)."""
    name = host.strip().rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


class AddressPolicy:
    """Denied ranges and the Admin API's endpoints, prepared once per worker."""

    def __init__(self, networks: Iterable[Network] = (), admin_port: int | None = None,
                 admin_addresses: Iterable[IPAddress] = (), admin_any_local: bool = False) -> None:
        self.networks = tuple(networks)
        self.admin_port = admin_port
        #: the Admin API is reached at these addresses (with admin_port)...
        self.admin_addresses = frozenset(_plain(a) for a in admin_addresses)
        #: ...or at any loopback address, when it listens on a wildcard address
        self.admin_any_local = admin_any_local
        self._admin_loopback = admin_any_local or any(a.is_loopback for a in self.admin_addresses)

    @classmethod
    def from_config(cls, config: "Config") -> "AddressPolicy | None":
        """The policy of ``upstream_deny_addresses``; None when it denies nothing."""
        entries = config.upstream_deny_addresses
        if not entries:
            return None
        networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "admin_listen"]
        if "admin_listen" not in entries:
            return cls(networks)
        listen = config.admin_listen
        wildcard = listen.host in _WILDCARDS
        addresses: list[IPAddress] = []
        if not wildcard:
            literal = parse_ip(listen.host)
            addresses = [literal] if literal is not None else _resolve(listen.host)
        return cls(networks, listen.port, addresses, admin_any_local=wildcard)

    def denied(self, address: IPAddress | str, port: int) -> str | None:
        """Why connecting to ``address``:``port`` is refused, or None when it is allowed."""
        ip = _plain(ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address)
        if port == self.admin_port and self._is_admin(ip):
            return "it is this gateway's Admin API (admin_listen)"
        for network in self.networks:
            if ip.version == network.version and ip in network:
                return f"{ip} is in the denied range {network} (upstream_deny_addresses)"
        return None

    def _is_admin(self, ip: IPAddress) -> bool:
        if ip in self.admin_addresses:
            return True
        # 0.0.0.0 and :: as a destination mean this host's loopback
        local = ip.is_loopback or ip.is_unspecified
        return local and (self.admin_any_local or (self._admin_loopback and ip.is_unspecified))

    def check_host(self, host: str, port: int) -> str | None:
        """The write-time check: what ``host`` says without DNS (names pass, and are
        checked again after resolution at connect time)."""
        if _is_localhost(host):
            candidates: list[IPAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
        else:
            ip = parse_ip(host)
            if ip is None:
                return None
            candidates = [ip]
        for candidate in candidates:
            reason = self.denied(candidate, port)
            if reason is not None:
                return reason
        return None


def _resolve(host: str) -> list[IPAddress]:
    """The addresses of a named admin_listen (once, at start; it is bound to them)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
