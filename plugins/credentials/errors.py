"""Why a request could not be given its target's credentials.

Every message names the credential field or the vault reference, never a
value, so it can be sent to the client and logged as it is.
"""
from __future__ import annotations


class CredentialError(Exception):
    """The request is answered with ``status`` and ``{"message": message}``; the
    target is not called. ``log_key`` is set when the operator must hear about it
    (logged once per key, not once per request)."""

    def __init__(self, status: int, message: str, log_key: str | None = None,
                 log_message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.log_key = log_key
        self.log_message = log_message or message


def config_error(message: str, key: str) -> CredentialError:
    """A credential the gateway cannot use as configured (500, logged once)."""
    return CredentialError(500, message, log_key=key)


def client_error(message: str) -> CredentialError:
    """A request the configured credential cannot be put into (the client's doing)."""
    return CredentialError(400, message)
