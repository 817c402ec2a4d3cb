"""Errors of the upstream client: ``kind`` tells whether the upstream may have seen the request."""
from __future__ import annotations


class UpstreamError(Exception):
    """A failed upstream call; ``kind`` is "connect", "timeout" or "read"."""

    kind = "read"


class ConnectError(UpstreamError):
    """The connection (TCP, TLS or proxy tunnel) could not be set up, or was reset
    before the request was written."""

    kind = "connect"


class ConnectTimeout(UpstreamError):
    """Setting up the connection took longer than connect_timeout."""

    kind = "connect"


class WriteTimeout(UpstreamError):
    """The upstream stopped taking the request (a write did not drain in time)."""

    kind = "timeout"


class ReadTimeout(UpstreamError):
    """No response head, or no next piece of the body, within read_timeout."""

    kind = "timeout"


class RemoteClosed(UpstreamError):
    """The connection closed before any byte of the response.

    ``kind`` is "connect" while the request had not fully gone out (the upstream
    cannot have processed it), "read" once it had.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class ProtocolError(UpstreamError):
    """The upstream's bytes are not a valid HTTP/1.x response."""

    kind = "read"


class IncompleteBody(UpstreamError):
    """The connection ended before the announced length or the last chunk."""

    kind = "read"
