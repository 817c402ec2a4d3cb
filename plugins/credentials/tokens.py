"""OAuth access tokens for Azure (azure-identity) and Google Cloud (google-auth),
cached per credential and refreshed before they expire.

The libraries are synchronous: a fetch runs in a thread, so the event loop
never waits on a token endpoint. One fetch per credential is in flight at a
time; requests that need the token meanwhile wait for that fetch. A token is
used until shortly before it expires: within the refresh margin the current
token is still sent while a new one is fetched in the background; past its
expiry requests wait for the new one. A failed fetch is answered at once for
a second (so a dead token endpoint is not hammered) and logged once until a
fetch succeeds again.

Errors of the libraries never leave this module: their messages may quote
responses or configuration, so requests get a message naming the credential
fields and the log gets the error's type and HTTP status only.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any, Callable

from .errors import CredentialError

log = logging.getLogger("kong_py_plugins.credentials")

AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"
GCP_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: refresh this long before expiry (at most half the token's lifetime)
REFRESH_MARGIN = 300.0
#: a token this close to its expiry is not sent any more: requests wait for a new one
EXPIRY_SLACK = 5.0
#: after a failed fetch, requests get the failure without a new fetch for this long
RETRY_AFTER_FAILURE = 1.0
#: the longest a request waits for a token
FETCH_WAIT = 30.0
#: seconds for the libraries' own HTTP calls
HTTP_TIMEOUT = 10
MAX_SOURCES = 512

Fetch = Callable[[], tuple[str, float, float | None]]  # token, expires_at, refresh_at (epoch seconds)


class TokenSource:
    """One credential's token: cached, refreshed ahead of expiry, one fetch at a time."""

    def __init__(self, kind: str, fields: str, fetch: Fetch, clock: Callable[[], float] = time.time) -> None:
        self.kind = kind            # "Azure" or "Google Cloud"
        self.fields = fields        # the credential fields this token comes from, for messages
        self._fetch = fetch
        self._clock = clock
        self.token: str | None = None
        self.expires_at = 0.0
        self.refresh_at = 0.0
        self.fetches = 0
        self._task: asyncio.Task[str] | None = None
        self._failed_at: float | None = None
        self._reported = False

    async def get(self) -> str:
        now = self._clock()
        token = self.token
        if token is not None and now < self.refresh_at:
            return token
        backing_off = self._failed_at is not None and now - self._failed_at < RETRY_AFTER_FAILURE
        if token is not None and now < self.expires_at - EXPIRY_SLACK:
            if not backing_off:
                self._start()  # refresh in the background; this request still has a valid token
            return token
        if backing_off and self._task is None:
            raise self._error()
        task = self._start()
        try:
            return await asyncio.wait_for(asyncio.shield(task), FETCH_WAIT)
        except asyncio.TimeoutError:
            raise CredentialError(504, f"Timed out getting an access token for this target "
                                       f"({self.fields})") from None

    def _start(self) -> "asyncio.Task[str]":
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._task.add_done_callback(_retrieve)
        return self._task

    async def _run(self) -> str:
        self.fetches += 1
        try:
            outcome = await asyncio.to_thread(_guarded, self._fetch)
        finally:
            self._task = None
        now = self._clock()
        if isinstance(outcome, _Failure):
            self._failed_at = now
            if not self._reported:
                self._reported = True
                log.error("could not get an access token from %s for credentials (%s): %s%s",
                          self.kind, self.fields, outcome.kind,
                          f" (HTTP {outcome.status})" if outcome.status else "")
            raise self._error()
        token, expires_at, refresh_at = outcome
        lifetime = max(0.0, expires_at - now)
        self.token, self.expires_at = token, expires_at
        self.refresh_at = refresh_at if refresh_at is not None else expires_at - min(REFRESH_MARGIN, lifetime / 2)
        self._failed_at = None
        if self._reported:
            log.warning("access token from %s for credentials (%s) fetched again", self.kind, self.fields)
            self._reported = False
        return token

    def _error(self) -> CredentialError:
        return CredentialError(502, f"Could not get an access token for this target from {self.kind} "
                                    f"({self.fields})")


class _Failure:
    """What is kept of a library's exception: its type and an HTTP status, never its message."""

    __slots__ = ("kind", "status")

    def __init__(self, exc: BaseException) -> None:
        self.kind = type(exc).__name__
        self.status = _status_of(exc)


def _guarded(fetch: Fetch) -> "tuple[str, float, float | None] | _Failure":
    """Run the library (in a thread); any exception becomes a _Failure."""
    try:
        token, expires_at, refresh_at = fetch()
        if not isinstance(token, str) or not token:
            raise ValueError("no token in the answer")
        return token, float(expires_at), refresh_at
    except Exception as exc:
        return _Failure(exc)


def _retrieve(task: "asyncio.Task[str]") -> None:
    """A background refresh that failed is already logged: do not let asyncio report it."""
    if not task.cancelled():
        task.exception()


def _status_of(exc: BaseException) -> int | None:
    for candidate in (getattr(exc, "status_code", None), getattr(getattr(exc, "response", None), "status_code", None),
                      getattr(getattr(exc, "response", None), "status", None)):
        if isinstance(candidate, int):
            return candidate
    return None


# -- Azure ---------------------------------------------------------------------

def azure_fetch(client_id: str | None, client_secret: str | None, tenant_id: str | None,
                managed_identity: bool) -> tuple[Fetch, str]:
    """A client-credentials (service principal) or managed-identity token fetcher.

    The authority comes from azure-identity's own setting, ``AZURE_AUTHORITY_HOST``
    (login.microsoftonline.com by default); managed identity finds its endpoint in
    the environment as azure-identity does (``IDENTITY_ENDPOINT``, ``MSI_ENDPOINT``,
    else the instance metadata service).
    """
    holder: dict[str, Any] = {}
    options = {"connection_timeout": HTTP_TIMEOUT, "read_timeout": HTTP_TIMEOUT, "retry_total": 1}

    def credential() -> Any:
        if "credential" not in holder:
            if managed_identity:
                from azure.identity import ManagedIdentityCredential
                holder["credential"] = ManagedIdentityCredential(client_id=client_id or None, **options)
            else:
                from azure.identity import ClientSecretCredential
                holder["credential"] = ClientSecretCredential(
                    tenant_id, client_id, client_secret, disable_instance_discovery=True, **options)
        return holder["credential"]

    def fetch() -> tuple[str, float, float | None]:
        info = credential().get_token_info(AZURE_SCOPE)
        return info.token, float(info.expires_on), float(info.refresh_on) if info.refresh_on else None

    fields = ("azure_use_managed_identity" if managed_identity
              else "azure_client_id, azure_client_secret, azure_tenant_id")
    return fetch, fields


# -- Google Cloud ------------------------------------------------------------------

def gcp_fetch(service_account_json: str | None) -> tuple[Fetch, str]:
    """Tokens from a service account key (JSON text; its ``token_uri`` says where
    to get them), or, without one, from the environment's application default
    credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's, or the metadata
    server of a Google Cloud machine)."""
    holder: dict[str, Any] = {}

    def credential() -> Any:
        if "credential" not in holder:
            import google.auth
            import google.auth.transport.requests
            if service_account_json is not None:
                # only a service account key: other credential types of google-auth
                # (external accounts) read files or run programs named in the JSON
                from google.oauth2 import service_account
                info = json.loads(service_account_json)
                if not isinstance(info, dict) or info.get("type") != "service_account":
                    raise ValueError("not a service account key")
                creds = service_account.Credentials.from_service_account_info(info, scopes=[GCP_SCOPE])
            else:
                creds, _ = google.auth.default(scopes=[GCP_SCOPE])
            holder["credential"] = creds
            holder["request"] = google.auth.transport.requests.Request()
        return holder["credential"]

    def fetch() -> tuple[str, float, float | None]:
        creds = credential()
        creds.refresh(_Timed(holder["request"]))
        expiry = creds.expiry
        if expiry is None:
            expires_at = time.time() + 3600
        else:
            if expiry.tzinfo is None:  # google-auth keeps naive UTC datetimes
                expiry = expiry.replace(tzinfo=dt.timezone.utc)
            expires_at = expiry.timestamp()
        return creds.token, expires_at, None

    fields = "gcp_service_account_json" if service_account_json is not None else "gcp_use_service_account"
    return fetch, fields


class _Timed:
    """google-auth's request callable with a timeout of ours (its default is 120 s)."""

    def __init__(self, request: Any) -> None:
        self._request = request

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["timeout"] = min(kwargs.get("timeout") or HTTP_TIMEOUT, HTTP_TIMEOUT)
        return self._request(*args, **kwargs)


# -- the cache of sources ----------------------------------------------------------------

class TokenSources:
    """This worker's token sources, keyed by a digest of the credential's settings
    (two targets with the same service principal share one token)."""

    def __init__(self) -> None:
        self._sources: OrderedDict[str, TokenSource] = OrderedDict()

    def get(self, kind: str, settings: tuple[Any, ...], make: Callable[[], tuple[Fetch, str]]) -> TokenSource:
        key = hashlib.sha256(json.dumps([kind, *settings]).encode()).hexdigest()
        source = self._sources.get(key)
        if source is None:
            fetch, fields = make()
            source = self._sources[key] = TokenSource(kind, fields, fetch)
            while len(self._sources) > MAX_SOURCES:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(key)
        return source

    def __iter__(self):
        return iter(self._sources.values())
